FROM python:3.11-slim
# The code-run jail (docs/codabench.md): bubblewrap for namespaces, libseccomp for its filter.
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap libseccomp2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Dependencies first, pinned with hashes (requirements.lock, `make lock`): a build next month
# installs what was tested, and this layer is reused while only the code changes.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY challenge ./challenge
COPY scoring ./scoring
COPY splitter ./splitter
COPY forum ./forum
# The project itself (the server and HEP extras are already in from the lock file). /data is
# made here and owned by podium: a new named volume mounted there copies this ownership, so the
# web (user podium) can write uploads to it.
RUN pip install --no-cache-dir --no-deps . \
    && useradd --create-home podium \
    && mkdir -p /data \
    && chown podium:podium /data
USER podium
EXPOSE 8000
CMD ["podium", "serve", "--host", "0.0.0.0", "--port", "8000"]
