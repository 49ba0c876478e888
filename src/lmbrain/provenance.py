"""Provenance: which code and which model weights produced an output.

Every output a later reader might trust records where it comes from: ``summary/config.yaml``
(:func:`software_versions`), each feature file (its ``provenance`` and ``revision``
attributes, :func:`model_revision`) and each fit record (the ``provenance`` key of its
``.json``).
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: prefix of a model shipped in a Python package (lmbrain.models.PACKAGE_PREFIX; not imported
#: from there so that recording versions needs no transformers)
PACKAGE_PREFIX = "package:"
#: the packages whose versions change numbers
PACKAGES = ("torch", "transformers", "himalaya", "numpy", "scipy", "h5py")


def git_commit(path: str | Path) -> str | None:
    """Commit of the git checkout that holds ``path`` (``+dirty`` when files are modified).

    Returns None when ``path`` is not inside a git work tree or git is not installed.
    """
    folder = Path(path).resolve()
    folder = folder if folder.is_dir() else folder.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no", "."],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    dirty = status.returncode == 0 and bool(status.stdout.strip())
    return head.stdout.strip() + ("+dirty" if dirty else "")


def package_version(name: str) -> str | None:
    """Installed version of a distribution, None when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def software_versions() -> dict:
    """lmbrain's version, location and git commit, Python's and the numeric packages' versions.

    Returns
    -------
    dict
        ``lmbrain`` (``version``, ``path``: the imported package folder, ``git_commit``: None
        unless that folder is in a git checkout), ``python`` and one key per name of
        :data:`PACKAGES` (None when not installed). The versions are read from the installed
        distributions' metadata, so nothing heavy is imported.
    """
    import lmbrain

    folder = Path(lmbrain.__file__).resolve().parent
    return {
        "lmbrain": {
            "version": lmbrain.__version__,
            "path": str(folder),
            "git_commit": git_commit(folder),
        },
        "python": platform.python_version(),
        **{name: package_version(name) for name in PACKAGES},
    }


def model_revision(entry: Mapping, source, config=None) -> str:
    """What exactly was loaded for a model entry.

    Parameters
    ----------
    entry : mapping
        Model entry (``model``, optional ``revision``).
    source : str or Path
        From :func:`lmbrain.models.resolve_source`: a hub name (``str``) or a local folder.
    config : transformers.PretrainedConfig, optional
        The loaded config; transformers sets ``_commit_hash`` on configs read from the hub.

    Returns
    -------
    str
        A hub model's commit hash (the resolved revision; ``unknown`` if transformers did not
        say), ``package <name>==<version>`` for a ``package:`` model, ``local folder <path>``
        otherwise.
    """
    name = str(entry["model"]).strip()
    if name.startswith(PACKAGE_PREFIX):
        package = name[len(PACKAGE_PREFIX) :]
        dist = package_version(package) or package_version(package.replace("_", "-"))
        return f"package {package}=={dist}" if dist else f"package {package}"
    if isinstance(source, Path):
        return f"local folder {source.resolve()}"
    commit = getattr(config, "_commit_hash", None) if config is not None else None
    return commit or f"hub {source}@{entry.get('revision') or 'main'} (commit unknown)"


def fit_provenance(feature_info: Mapping) -> dict:
    """What a fit record says about where it comes from.

    Parameters
    ----------
    feature_info : mapping
        The feature file's attributes (:func:`lmbrain.features.read_feature_info`).

    Returns
    -------
    dict
        The fit's :func:`software_versions`, plus ``feature_id``, ``model_revision`` (the
        feature file's ``revision``) and ``features_software`` (the software that extracted the
        features; None for files written before provenance was recorded).
    """
    return {
        **software_versions(),
        "feature_id": feature_info.get("feature_id"),
        "model_revision": feature_info.get("revision"),
        "features_software": feature_info.get("provenance"),
    }
