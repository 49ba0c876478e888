"""What a workflow job asks the scheduler for: memory (MB) and GPUs.

The rules call these functions in their ``resources:``; Slurm (``profiles/slurm``) turns
``mem_mb`` into ``sbatch --mem`` and ``gpu`` into ``--gpus``, and a local run uses ``gpu`` to
hold extraction (and, if asked for, fit) jobs to the GPUs given with ``--resources gpu=N``.
Every memory request is multiplied by Snakemake's ``attempt`` (1, 2, ...), so a job killed
for lack of memory is retried with twice, three times... as much.

Estimates (documented in docs/slurm.md)
---------------------------------------
*Extraction*: ``4000 MB`` (Python, torch, one story's hidden states of every layer) plus
twice the weights found on disk (a float32 copy and loading overhead; eight times a GGUF
file, which is quantized to roughly 4 bits). Hub models that are not on disk get 16000 MB.

*Fit*: the design matrix has ``n_trs`` rows and ``n_features = hidden_size x n_delays``
columns, the responses ``n_voxels`` columns. The fit holds both in float64 (the stories'
blocks and their concatenation), in float32, and as per-fold training and validation copies,
one Gram matrix of the smaller side ``m = min(n_trs, n_features)`` with its eigenvectors and a
work copy, the projected responses of one voxel batch and the float32 coefficients::

    bytes = 32 n_trs (n_features + n_voxels) + 12 m^2 + 8 m n_batch + 4 n_features n_voxels

(the 32 bytes per element were measured with tracemalloc on the numpy backend:
tests/test_resources.py checks the request still covers the measured peak)
where ``n_batch`` is ``fitting.n_targets_batch`` (all voxels when unset). The request is
``1000 MB + 1.5 x bytes`` (base interpreter and libraries, and a margin), times the attempt.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path

BASE_FIT_MB = 1000
BASE_EXTRACTION_MB = 4000
HUB_EXTRACTION_MB = 16000
FIT_MARGIN = 1.5
#: Bytes per element of the fit model's terms (measured: benchmarks/bench_memory.py).
DESIGN_BYTES = 8
RESPONSE_BYTES = 8
GRAM_BYTES = 40


def extraction_mem_mb(entry: Mapping, cache_dir: str | Path, attempt: int = 1) -> int:
    """Memory request of an extraction job (MB), scaled by the size of the model's weights.

    Parameters
    ----------
    entry : mapping
        Model entry (or :func:`lmbrain.features.feature_spec`).
    cache_dir : str or Path
        The workflow's cache folder (assembled GGUF files).
    attempt : int
        Snakemake's attempt number; the request is multiplied by it.

    Returns
    -------
    int
        ``4000 + 2 x weights MB`` for a local folder (``*.safetensors`` and ``*.bin``),
        ``4000 + 8 x GGUF MB`` for a GGUF file, 16000 for a hub model, times ``attempt``.
    """
    from lmbrain.errors import LmbrainError
    from lmbrain.models import resolve_source

    try:
        source, gguf = resolve_source(entry, cache_dir)
    except LmbrainError:
        return HUB_EXTRACTION_MB * int(attempt)
    if gguf is not None and Path(gguf).is_file():
        mb = BASE_EXTRACTION_MB + 8 * Path(gguf).stat().st_size / 1e6
    elif isinstance(source, Path) and source.is_dir():
        weights = sum(p.stat().st_size for p in source.rglob("*.safetensors"))
        weights += sum(p.stat().st_size for p in source.rglob("*.bin"))
        mb = BASE_EXTRACTION_MB + 2 * weights / 1e6
    else:
        mb = HUB_EXTRACTION_MB
    return int(math.ceil(mb)) * int(attempt)


def fit_terms(n_trs: int, n_features: int, n_voxels: int, n_batch: int | None = None) -> dict:
    """The terms of :func:`fit_bytes`, in bytes (see the module docstring).

    Parameters
    ----------
    n_trs, n_features, n_voxels : int
        Training TRs, design columns, voxels.
    n_batch : int, optional
        Voxels per solver batch (``fitting.n_targets_batch``); default the solver's own
        choice (:func:`lmbrain.fitting.targets_batch` with a budget of a quarter of the
        responses, clipped to [64, 512] MiB).

    Returns
    -------
    dict of str -> int
        ``design`` (the stories' float32 design blocks and their concatenation),
        ``responses`` (the float32 responses, twice while the stories' blocks are joined),
        ``gram`` (the float64 Gram matrix of the smaller side ``m``, a fold's copy, the
        eigensolver's eigenvectors and workspace), ``projection`` (the float32 map from the
        eigenbasis to the features or rows, ``max(n, p) x m``) and ``batch`` (one voxel
        batch's work arrays).
    """
    n, p, v = int(n_trs), int(n_features), int(n_voxels)
    m = min(n, p)
    if n_batch is None:
        from lmbrain.fitting import BATCH_BYTES_FRACTION, BATCH_BYTES_MAX, BATCH_BYTES_MIN

        batch = min(BATCH_BYTES_MAX, max(BATCH_BYTES_MIN, BATCH_BYTES_FRACTION * 4 * n * v))
    else:
        batch = 4 * min(v, int(n_batch)) * (3 * n + max(2 * n, p))
    return {
        "design": DESIGN_BYTES * n * p,
        "responses": RESPONSE_BYTES * n * v,
        "gram": GRAM_BYTES * m * m,
        "projection": 4 * max(n, p) * m,
        "batch": int(batch),
    }


def fit_bytes(n_trs: int, n_features: int, n_voxels: int, n_batch: int | None = None) -> int:
    """Peak bytes of one fit job's arrays above the libraries (the module docstring).

    Parameters
    ----------
    n_trs : int
        Training TRs (rows of the design matrix).
    n_features : int
        Columns of the design matrix (hidden size x number of delays).
    n_voxels : int
        Response columns.
    n_batch : int, optional
        Voxels per solver batch (``fitting.n_targets_batch``); default the solver's choice.

    Returns
    -------
    int
    """
    return int(sum(fit_terms(n_trs, n_features, n_voxels, n_batch).values()))


def fit_mem_mb(
    n_trs: int, n_features: int, n_voxels: int, n_batch: int | None = None, attempt: int = 1
) -> int:
    """Memory request of a fit job (MB): ``(BASE_FIT_MB + FIT_MARGIN x fit_bytes / 1e6) x attempt``."""
    mb = BASE_FIT_MB + FIT_MARGIN * fit_bytes(n_trs, n_features, n_voxels, n_batch) / 1e6
    return int(math.ceil(mb)) * int(attempt)


def n_design_columns(hidden_size: int, temporal: Mapping) -> int:
    """Columns of the design matrix: one block per FIR delay (Lanczos), one for the HRF."""
    if temporal.get("method", "lanczos") == "hrf":
        return int(hidden_size)
    return int(hidden_size) * len(temporal.get("delays", [1, 2, 3, 4]))


def fit_job_mem_mb(
    manifest_path: str | Path,
    feature_path: str | Path,
    subject: str,
    temporal: Mapping,
    fitting: Mapping,
    attempt: int = 1,
) -> int:
    """Memory request of one fit job, read from its inputs once they exist.

    ``n_trs`` is the sum of every story's TRs in the subject's manifest (an upper bound on
    the training TRs), ``n_voxels`` the subject's voxel count there, ``hidden_size`` the
    feature file's attribute.

    Raises
    ------
    FileNotFoundError
        While an input does not exist yet (its ``filename`` is the input's path): Snakemake
        then shows the request as ``<TBD>`` and computes it when the job is about to run.
    """
    for path in (manifest_path, feature_path):
        if not Path(path).is_file():
            raise FileNotFoundError(2, "input not created yet", str(path))
    from lmbrain.features import read_feature_info

    manifest = json.loads(Path(manifest_path).read_text())
    n_trs = sum(int(story.get("n_trs", 0)) for story in manifest["stories"].values())
    n_voxels = int(manifest["subjects"][subject]["n_voxels"])
    hidden = int(read_feature_info(feature_path)["hidden_size"])
    return fit_mem_mb(
        n_trs,
        n_design_columns(hidden, temporal),
        n_voxels,
        fitting.get("n_targets_batch"),
        attempt,
    )


def extraction_gpus(device: str, override: int | None = None) -> int:
    """GPUs an extraction job holds.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``features.device``.
    override : int, optional
        ``cluster.extraction_gpus``; when given it is the answer.

    Returns
    -------
    int
        ``override`` if given; else 1 for ``cuda``, and for ``auto`` 1 only where the DAG is
        built on a machine with an NVIDIA driver (``nvidia-smi``), so a CPU-only run never
        waits for a GPU.
    """
    if override is not None:
        return int(override)
    if device == "auto":
        return int(shutil.which("nvidia-smi") is not None)
    return int(device == "cuda")


def alignment_job_mem_mb(
    manifest_path: str | Path,
    subject: str,
    n_features: int,
    temporal: Mapping,
    fitting: Mapping,
    attempt: int = 1,
) -> int:
    """Memory request of one alignment job (:mod:`lmbrain.alignment`): one fit's worth.

    As :func:`fit_job_mem_mb`, with ``n_features`` design columns (the widest feature set of
    the diagnostic, before delays) instead of a feature file's hidden size; the job keeps the
    subject's responses and one lag's design matrices at a time.

    Raises
    ------
    FileNotFoundError
        While the manifest does not exist yet (Snakemake then computes the request later).
    """
    if not Path(manifest_path).is_file():
        raise FileNotFoundError(2, "input not created yet", str(manifest_path))
    manifest = json.loads(Path(manifest_path).read_text())
    n_trs = sum(int(story.get("n_trs", 0)) for story in manifest["stories"].values())
    n_voxels = int(manifest["subjects"][subject]["n_voxels"])
    return fit_mem_mb(
        n_trs,
        n_design_columns(n_features, temporal),
        n_voxels,
        fitting.get("n_targets_batch"),
        attempt,
    )
