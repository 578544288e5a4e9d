FROM python:3.11-slim
# The code-run jail (docs/codabench.md): bubblewrap for namespaces, libseccomp for its filter.
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap libseccomp2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY challenge ./challenge
COPY scoring ./scoring
COPY splitter ./splitter
COPY forum ./forum
RUN pip install --no-cache-dir . && useradd --create-home podium
USER podium
EXPOSE 8000
CMD ["podium", "serve", "--host", "0.0.0.0", "--port", "8000"]
