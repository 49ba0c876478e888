"""Resource requests of the workflow's jobs (lmbrain.resources)."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from lmbrain import resources
from lmbrain.features import write_features
from lmbrain.fitting import fit_ridge_cv


def test_fit_bytes_by_hand():
    # n=1000 TRs, p=200 features, v=50 voxels; m = min(n, p) = 200; batches of 10 voxels
    terms = resources.fit_terms(1000, 200, 50, n_batch=10)
    assert terms == {
        "design": resources.DESIGN_BYTES * 1000 * 200,
        "responses": resources.RESPONSE_BYTES * 1000 * 50,
        "gram": resources.GRAM_BYTES * 200**2,
        "projection": 4 * 1000 * 200,
        "batch": 4 * 10 * (3 * 1000 + 2 * 1000),
    }
    assert resources.fit_bytes(1000, 200, 50, n_batch=10) == sum(terms.values())
    # a batch larger than the voxels is all the voxels
    assert resources.fit_terms(1000, 200, 50, 500)["batch"] == 4 * 50 * 5000
    # by default the solver's own budget: a quarter of Y, clipped to [64, 512] MiB
    assert resources.fit_terms(1000, 200, 50)["batch"] == 64 * 2**20
    assert resources.fit_terms(20_000, 200, 80_000)["batch"] == 512 * 2**20


def test_fit_mem_mb_scales_with_attempt():
    one = resources.fit_mem_mb(1000, 200, 50)
    want = resources.BASE_FIT_MB + resources.FIT_MARGIN * resources.fit_bytes(1000, 200, 50) / 1e6
    assert one == int(np.ceil(want))
    assert resources.fit_mem_mb(1000, 200, 50, attempt=2) == 2 * one
    # the paper's shape (9,000 TRs, 4 x 8,192 features, 80,000 voxels): no weights are held
    big = resources.fit_mem_mb(9_000, 32_768, 80_000)
    assert 15_000 < big < 30_000


def measured_fit_peak(n_story: int, n_per: int, p: int, v: int, n_batch: int) -> int:
    """Peak bytes numpy allocates for one fit built as lmbrain.encoding builds it."""
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        # float32 design blocks per story (the job's cache), concatenated; a test story
        xs = [rng.standard_normal((n_per, p), dtype=np.float32) for _ in range(n_story + 1)]
        ys = [rng.standard_normal((n_per, v), dtype=np.float32) for _ in range(n_story)]
        X, Y = np.concatenate(xs[:-1]), np.concatenate(ys)
        del ys
        groups = np.repeat(np.arange(n_story), n_per)
        fit_ridge_cv(
            X,
            Y,
            groups,
            [1.0, 10.0, 100.0],
            n_folds=2,
            backend="numpy",
            n_targets_batch=n_batch,
            X_test=xs[-1],
        )
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "shape",
    [(4, 150, 120, 300), (4, 50, 400, 300), (4, 150, 50, 2000)],
    ids=["balanced", "more-features", "more-voxels"],
)
def test_fit_bytes_cover_the_measured_peak(shape):
    """The model's bytes cover what the fit allocates (numpy's share, BLAS excluded), not
    wildly above it (bench_memory.py measures the whole RSS, BENCHMARKS.md)."""
    measured_fit_peak(2, 10, 5, 5, 5)  # imports (himalaya, its backend) out of the measure
    n_story, n_per, p, v = shape
    peak = measured_fit_peak(*shape, n_batch=100)
    estimate = resources.fit_bytes(n_story * n_per, p, v, n_batch=100)
    assert 0.5 * estimate <= peak <= estimate, (peak, estimate)


def test_fit_job_mem_mb_reads_its_inputs(tmp_path):
    manifest = tmp_path / "sub-01.json"
    manifest.write_text(
        json.dumps(
            {
                "stories": {"a": {"n_trs": 300}, "b": {"n_trs": 200}},
                "subjects": {"sub-01": {"n_voxels": 1000}},
            }
        )
    )
    feats = tmp_path / "feats.h5"
    write_features(feats, {"a": {0: np.zeros((3, 8))}}, {"hidden_size": 64})
    lanczos = {"method": "lanczos", "delays": [1, 2, 3]}
    got = resources.fit_job_mem_mb(manifest, feats, "sub-01", lanczos, {}, attempt=2)
    assert got == resources.fit_mem_mb(500, 64 * 3, 1000, None, 2)
    hrf = resources.fit_job_mem_mb(manifest, feats, "sub-01", {"method": "hrf"}, {})
    assert hrf == resources.fit_mem_mb(500, 64, 1000)
    batched = resources.fit_job_mem_mb(manifest, feats, "sub-01", lanczos, {"n_targets_batch": 10})
    assert batched == resources.fit_mem_mb(500, 192, 1000, 10)


def test_fit_job_mem_mb_waits_for_inputs(tmp_path):
    """A missing input raises FileNotFoundError naming it: Snakemake shows <TBD> until then."""
    missing = tmp_path / "feats.h5"
    manifest = tmp_path / "m.json"
    manifest.write_text("{}")
    with pytest.raises(FileNotFoundError) as info:
        resources.fit_job_mem_mb(manifest, missing, "s", {}, {})
    assert info.value.filename == str(missing)


def test_extraction_mem_mb_follows_weights(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 10_000_000)  # 10 MB
    (folder / "config.json").write_text("{}")
    base = resources.BASE_EXTRACTION_MB
    assert resources.extraction_mem_mb({"model": str(folder)}, tmp_path) == base + 20
    assert resources.extraction_mem_mb({"model": str(folder)}, tmp_path, attempt=3) == 3 * (
        base + 20
    )
    (folder / "q.gguf").write_bytes(b"\0" * 1_000_000)  # 1 MB, quantized: x 8
    entry = {"model": str(folder), "gguf_file": "q.gguf"}
    assert resources.extraction_mem_mb(entry, tmp_path) == base + 8
    # a hub name (not on disk) and a missing package get the flat request
    assert resources.extraction_mem_mb({"model": "org/some-model"}, tmp_path) == 16000
    assert resources.extraction_mem_mb({"model": "package:no_such_pkg_xyz"}, tmp_path) == 16000


def test_extraction_gpus():
    assert resources.extraction_gpus("cuda") == 1
    assert resources.extraction_gpus("cpu") == 0
    assert resources.extraction_gpus("cpu", override=2) == 2
    assert resources.extraction_gpus("cuda", override=0) == 0


def test_design_columns():
    assert resources.n_design_columns(10, {"method": "lanczos", "delays": [1, 2, 3, 4]}) == 40
    assert resources.n_design_columns(10, {"method": "hrf", "delays": [1, 2]}) == 10
