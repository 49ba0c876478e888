"""Atomic file writing: a failed job never leaves a file a later run would trust.

Three promises, for every output the workflow writes:

- **All or nothing.** :func:`atomic_path` yields a temporary path beside the target and renames
  it onto the target only when the writer succeeds; on an exception the temporary file goes.
- **Permissions like any other file.** The temporary file (``tempfile.mkstemp``, mode 600) and
  folder (``tempfile.mkdtemp``, mode 700) are given the mode the process's umask gives a new
  file (``0o666 & ~umask``) or folder (``0o777 & ~umask``) before they are renamed into place,
  so that with umask 022 colleagues can read the results, and with 077 nobody else can.
- **No temporary files left by killed jobs.** A job killed by a signal, a scheduler or a power
  cut never reaches its clean-up, and its temporary file (a feature file of a large model can
  take gigabytes) stayed behind. The temporary name records the writing process,
  ``.<target>.<pid>@<host>.<random>.tmp<suffix>``, and the next write of the same target
  removes the leftovers of processes that are gone (:func:`remove_stale_temporaries`): on this
  host, those whose process no longer exists; from another host (a Slurm job that ran on
  another node), and old-style names without a process, those untouched for
  :data:`STALE_AFTER_S` seconds. The temporary file of a job still writing on this host is never
  removed (Snakemake also never runs two jobs for one output at once).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: A temporary file or folder of another host (or of an older lmbrain, without a process id)
#: counts as left behind once it has not been modified for this long (seconds).
STALE_AFTER_S = 3600.0

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_OURS = re.compile(r"^(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)\.[A-Za-z0-9_]+\.tmp")
_OLD_STYLE = re.compile(r"^[a-z0-9_]{8}\.tmp")  # tempfile's 8 random characters, no process


def current_umask() -> int:
    """The process's file-mode creation mask (read without changing it where possible)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: the classic read-by-setting (briefly process-wide)
    os.umask(mask)
    return mask


def apply_umask(path: str | Path) -> None:
    """Give ``path`` the mode a newly created file or folder gets under the current umask."""
    path = Path(path)
    full = 0o777 if path.is_dir() else 0o666
    os.chmod(path, full & ~current_umask())


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}@{_HOST}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or a number we cannot check): leave it
    return True


def _is_stale(candidate: Path, rest: str, now: float) -> bool:
    ours = _OURS.match(rest)
    if ours and ours["host"] == _HOST:
        return not _pid_alive(int(ours["pid"]))
    if ours or _OLD_STYLE.match(rest):
        try:
            return now - candidate.lstat().st_mtime > STALE_AFTER_S
        except FileNotFoundError:
            return False
    return False  # not a temporary of this target


def remove_stale_temporaries(target: str | Path) -> list[Path]:
    """Remove temporary siblings of ``target`` left behind by processes that are gone.

    See the module docstring for which ones count as left behind.

    Returns
    -------
    list of Path
        What was removed.
    """
    target = Path(target)
    head = f".{target.name}."
    removed = []
    now = time.time()
    try:
        siblings = list(target.parent.iterdir())
    except FileNotFoundError:
        return removed
    for candidate in siblings:
        name = candidate.name
        if not name.startswith(head) or not _is_stale(candidate, name[len(head) :], now):
            continue
        with contextlib.suppress(FileNotFoundError):
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()
        removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched,
    so an interrupted or failed write never produces a partial output. The file gets the
    umask's mode, and temporary files an earlier, killed write of ``path`` left behind are
    removed first (module docstring).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        apply_umask(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def make_temp_dir(target: str | Path) -> Path:
    """A new, empty folder beside ``target`` to build it in, then rename onto it.

    Like ``tempfile.mkdtemp`` but named (and cleaned up after killed jobs) like
    :func:`atomic_path`'s files, and with the umask's mode rather than 700, so the folder keeps
    that mode once renamed. The caller renames it into place or removes it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    apply_umask(tmp)
    return tmp


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write arrays to an uncompressed ``.npz`` file atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_subject_npzs(paths) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Per-subject ``.npz`` outputs (``<kind>/<subject>/<name>.npz``) read whole.

    Parameters
    ----------
    paths : iterable of str or Path

    Returns
    -------
    dict
        ``{(subject, name): {array name: array}}``, the subject being the parent folder's name
        and the name the file's stem (how banded and stacked fits are laid out).
    """
    tables = {}
    for path in map(Path, paths):
        with np.load(path) as data:
            tables[(path.parent.name, path.stem)] = {key: data[key] for key in data.files}
    return tables


def save_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_yaml(path: str | Path, obj) -> None:
    """Write ``obj`` (JSON-serialisable: dicts, lists, numbers, strings) as YAML atomically."""
    import yaml

    plain = json.loads(json.dumps(obj, default=_json_default))
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(plain, sort_keys=False, default_flow_style=False))


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
