"""What a sandboxed process may see of the filesystem: an explicit list of bind mounts.

A :class:`FileView` is the whole filesystem of a jail: an empty root, the :class:`Mount` entries
it lists (each a host file or directory shown at a path inside), and one private writable scratch
directory. Nothing else is visible, whatever the working directory, the settings or ``sys.path``
of the process that builds it. The grading sandbox (:mod:`scoring.zygote`) mounts it itself;
:func:`bwrap_arguments` gives the same view to bubblewrap, for sandboxes that run a whole program.

The runtime part (:func:`runtime_mounts`) is the Python installation: the standard library, the
installed-packages directories (``site-packages`` / ``dist-packages``), the system's shared
libraries, and for any package the grader imports from elsewhere (a checkout on ``PYTHONPATH``,
the working directory) that package's own directory and nothing beside it. The job part
(:func:`grading_mounts`) is one submission, one solution and the organizer's metric file, each
read-only at a fixed path under ``/input``.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: Where a grading job's own files appear inside the jail.
SUBMISSION_TARGET = "/input/submission"
SOLUTION_TARGET = "/input/solution.parquet"
METRIC_DIR_TARGET = "/input/metric"
#: The jail's only writable directory (a size-capped tmpfs private to one job).
SCRATCH = "/scratch"
#: Packages the grading child imports; a copy outside the installation is mounted alone.
GRADER_PACKAGES = ("scoring", "numpy", "pandas", "pyarrow")
#: Shared libraries that numpy/pyarrow extensions may load late (dlopen).
SYSTEM_LIBRARIES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64")


@dataclass(frozen=True)
class Mount:
    """One host file or directory shown inside the jail (read-only unless ``writable``)."""

    source: str
    target: str
    writable: bool = False

    def to_dict(self) -> dict[str, object]:
        """The JSON form sent to the zygote."""
        return {"source": self.source, "target": self.target, "writable": self.writable}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Mount:
        """Read :meth:`to_dict`'s form."""
        return cls(str(data["source"]), str(data["target"]), bool(data.get("writable", False)))


@dataclass(frozen=True)
class FileView:
    """The complete filesystem of a jail: these mounts, a private scratch directory, /dev/null."""

    mounts: tuple[Mount, ...]
    scratch: str = SCRATCH
    devices: tuple[str, ...] = field(default=("/dev/null",))
    #: Symbolic links recreated inside (path, what it points to): a merged-/usr system's
    #: ``/lib64 -> usr/lib64``, where the dynamic loader is looked for.
    links: tuple[tuple[str, str], ...] = ()

    def with_mounts(self, more: Iterable[Mount]) -> FileView:
        """This view plus ``more`` mounts (a job's own files)."""
        return FileView((*self.mounts, *more), self.scratch, self.devices, self.links)

    def target_of(self, source: str) -> str | None:
        """Where the host path ``source`` appears inside the jail, or ``None`` if it does not."""
        real = os.path.realpath(source)
        for mount in self.mounts:
            if real == mount.source:
                return mount.target
            if real.startswith(mount.source.rstrip("/") + "/"):
                return mount.target.rstrip("/") + real[len(mount.source.rstrip("/")) :]
        return None


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _is_installation_dir(path: str) -> bool:
    """A directory of installed packages, as opposed to a project folder on ``sys.path``."""
    return os.path.basename(path) in ("site-packages", "dist-packages")


def runtime_mounts(packages: Sequence[str] = GRADER_PACKAGES) -> tuple[Mount, ...]:
    """The Python runtime of this process, read-only, each at its own path.

    Never the working directory nor a ``sys.path`` entry that is not an installation directory:
    a package the grader imports from such a place (``scoring`` from a checkout) is mounted as
    its package directory alone, so the checkout's ``var/``, ``.git`` and database stay outside.
    """
    roots: set[str] = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            roots.add(paths[key])
    for entry in sys.path:
        if (
            entry
            and os.path.isabs(entry)
            and (_is_installation_dir(entry) or entry.endswith("/lib-dynload"))
        ):
            roots.add(entry)
    roots = {os.path.realpath(r) for r in roots if os.path.isdir(r)}
    for name in packages:
        module = sys.modules.get(name)
        where = getattr(module, "__file__", None)
        if where is None:
            continue
        package_dir = os.path.realpath(os.path.dirname(where))
        if not _under(package_dir, roots):
            roots.add(package_dir)
    libraries = {os.path.realpath(lib) for lib in SYSTEM_LIBRARIES if os.path.isdir(lib)}
    # Never the filesystem root or a whole top-level tree such as /work or /root.
    chosen = sorted(r for r in roots if r.count("/") >= 2) + sorted(libraries)
    kept: list[str] = []
    for root in sorted(set(chosen)):
        if not _under(root, kept):
            kept.append(root)
    files = [m for m in interpreter_mounts() if not _under(m.target, kept)]
    return tuple(Mount(root, root) for root in kept) + tuple(files)


def interpreter_mounts() -> tuple[Mount, ...]:
    """The interpreter's own files, so a sandbox can also start a fresh ``python`` in the view.

    The executable at the path it is called by (a venv's ``bin/python``, bound as the binary it
    links to), the venv's ``pyvenv.cfg`` and the shared ``libpython``. The zygote's forked
    children do not need them; a sandbox that starts a new interpreter (bubblewrap) does.
    """
    files = [sys.executable, os.path.realpath(sys.executable)]
    if sys.prefix != sys.base_prefix:
        files.append(os.path.join(sys.prefix, "pyvenv.cfg"))
    libdir = sysconfig.get_config_var("LIBDIR")
    for key in ("LDLIBRARY", "INSTSONAME"):
        library = sysconfig.get_config_var(key)
        if libdir and library:
            files.append(os.path.join(libdir, library))
    mounts: dict[str, Mount] = {}
    for path in files:
        if (
            path
            and os.path.isfile(path)
            and not os.path.realpath(path).startswith(tuple(SYSTEM_LIBRARIES))
        ):
            mounts.setdefault(path, Mount(os.path.realpath(path), os.path.abspath(path)))
    return tuple(mounts.values())


def grading_mounts(
    submission: str, solution: str, metric_file: str | None = None
) -> tuple[Mount, ...]:
    """One job's own files: the submission, the solution, and the organizer's metric file."""
    mounts = [
        Mount(os.path.realpath(submission), SUBMISSION_TARGET),
        Mount(os.path.realpath(solution), SOLUTION_TARGET),
    ]
    if metric_file is not None:
        real = os.path.realpath(metric_file)
        mounts.append(Mount(real, f"{METRIC_DIR_TARGET}/{os.path.basename(real)}"))
    return tuple(mounts)


def system_links() -> tuple[tuple[str, str], ...]:
    """The system library folders that are symbolic links here (merged /usr), as (path, target)."""
    return tuple((lib, os.readlink(lib)) for lib in SYSTEM_LIBRARIES[:2] if os.path.islink(lib))


def runtime_view() -> FileView:
    """The Python runtime of this process as a complete :class:`FileView` (no job files yet)."""
    return FileView(runtime_mounts(), links=system_links())


def bwrap_arguments(view: FileView) -> list[str]:
    """bubblewrap options that build ``view`` (put them before the command to run).

    The same guarantees as the grading jail: an empty root, the listed mounts, a private tmpfs
    as the scratch directory (also the working directory), and /dev/null.
    """
    args = ["--tmpfs", "/"]
    for mount in view.mounts:
        args += ["--bind" if mount.writable else "--ro-bind", mount.source, mount.target]
    for path, points_to in view.links:
        args += ["--symlink", points_to, path]
    for device in view.devices:
        args += ["--dev-bind", device, device]
    args += ["--tmpfs", view.scratch, "--chdir", view.scratch]
    return args
