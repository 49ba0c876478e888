"""What a workflow job asks the scheduler for: memory (MB) and GPUs.

The rules call these functions in their ``resources:``; Slurm (``profiles/slurm``) turns
``mem_mb`` into ``sbatch --mem`` and ``gpu`` into ``--gpus``, and a local run uses ``gpu`` to
hold extraction (and, if asked for, fit) jobs to the GPUs given with ``--resources gpu=N``.
Every memory request is multiplied by Snakemake's ``attempt`` (1, 2, ...), so a job killed
for lack of memory is retried with twice, three times... as much.

Estimates (documented in docs/slurm.md; measured in BENCHMARKS.md, *Memory requests*)
-----------------------------------------------------------------------------------
*Extraction*: ``600 MB`` (Python, torch and transformers' code, a batch of windows: the
hidden states stream to disk window batch by window batch) plus twice the weights found on
disk (a float32 copy and loading overhead; eight times a GGUF file, which is quantized to
roughly 4 bits and dequantized in float32, the conversion included). Hub models that are not
on disk get 16000 MB. The demo's six extraction jobs peaked at 1.0-1.5x less than that.

*Fit*: the design matrix has ``n_trs`` rows and ``n_features = hidden_size x n_delays``
columns, the responses ``n_voxels`` columns, all float32 (:func:`fit_terms`)::

    bytes = 8 n_trs n_features       the stories' design blocks (kept for all fractions)
                                     and their concatenation
          + 8 n_trs n_voxels         the responses, twice while the stories are joined
          + 40 m^2                   float64 Gram of the smaller side m = min(n_trs,
                                     n_features), a fold's copy, eigenvectors, workspace
          + 4 max(n_trs, n_features) m   the map from the eigenbasis to the features (rows)
          + one voxel batch          fitting.n_targets_batch, or the solver's own budget
                                     (a quarter of the responses, clipped to 64-512 MiB)

The features x voxels weights are not in it: the encoding fit predicts the test set voxel
batch by voxel batch (``fit_ridge_cv(X_test=...)``), never holding them whole (they would be
10.5 GB at the paper's 9,000 x 32,768 x 80,000). The request is ``BASE_FIT_MB + FIT_MARGIN x
bytes`` (interpreter and libraries, and a margin), times the attempt;
``benchmarks/bench_memory.py`` measures the peak RSS at several shapes against it.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path

#: A fit job's interpreter and libraries (numpy, scipy, himalaya, h5py: ~170-180 MB RSS) and
#: the margin on its arrays: request / measured peak 1.1-1.45 over the shapes of
#: benchmarks/bench_memory.py (BENCHMARKS.md, *Memory requests*).
BASE_FIT_MB = 150
FIT_MARGIN = 1.2
BASE_EXTRACTION_MB = 600
HUB_EXTRACTION_MB = 16000
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
        ``600 + 2 x weights MB`` for a local folder (``*.safetensors`` and ``*.bin``),
        ``600 + 8 x GGUF MB`` for a GGUF file, 16000 for a hub model, times ``attempt``.
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
