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
    # n=1000 TRs, p=200 features, v=50 voxels, all voxels in one batch; m = min(n, p) = 200
    expected = 32 * 1000 * 250 + 12 * 200**2 + 8 * 200 * 50 + 4 * 200 * 50
    assert resources.fit_bytes(1000, 200, 50) == expected == 8_600_000
    # a voxel batch bounds only the projected responses
    assert resources.fit_bytes(1000, 200, 50, n_batch=10) == expected - 8 * 200 * 40
    assert resources.fit_bytes(1000, 200, 50, n_batch=500) == expected


def test_fit_mem_mb_scales_with_attempt():
    one = resources.fit_mem_mb(1000, 200, 50)
    assert one == int(np.ceil(1000 + 1.5 * 8.6))
    assert resources.fit_mem_mb(1000, 200, 50, attempt=2) == 2 * one
    # voxels x features dominate a large fit: 20k TRs, 4096 x 4 features, 80k voxels
    big = resources.fit_mem_mb(20_000, 16_384, 80_000)
    assert 50_000 < big < 200_000


def measured_fit_peak(n_story: int, n_per: int, p: int, v: int) -> int:
    """Peak bytes numpy allocates for one fit built as lmbrain.encoding builds it."""
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        # float64 blocks per story, then concatenated
        xs = [rng.standard_normal((n_per, p)) for _ in range(n_story)]
        ys = [rng.standard_normal((n_per, v)) for _ in range(n_story)]
        X, Y = np.concatenate(xs), np.concatenate(ys)
        groups = np.repeat(np.arange(n_story), n_per)
        fit_ridge_cv(X, Y, groups, [1.0, 10.0, 100.0], n_folds=2, backend="numpy")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "shape",
    [(4, 150, 120, 300), (4, 50, 400, 300), (4, 150, 50, 2000)],
    ids=["balanced", "more-features", "more-voxels"],
)
def test_fit_request_covers_the_measured_peak(shape):
    """The request's arrays part (margin included) covers what the fit really allocates."""
    measured_fit_peak(2, 10, 5, 5)  # imports (himalaya, its backend) out of the measure
    peak = measured_fit_peak(*shape)
    n_story, n_per, p, v = shape
    estimate = resources.fit_bytes(n_story * n_per, p, v)
    assert peak <= resources.FIT_MARGIN * estimate, (peak, estimate)
    assert peak >= 0.5 * estimate, (peak, estimate)  # and is not wildly above it


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
    assert resources.extraction_mem_mb({"model": str(folder)}, tmp_path) == 4000 + 20
    assert resources.extraction_mem_mb({"model": str(folder)}, tmp_path, attempt=3) == 3 * 4020
    (folder / "q.gguf").write_bytes(b"\0" * 1_000_000)  # 1 MB, quantized: x 8
    entry = {"model": str(folder), "gguf_file": "q.gguf"}
    assert resources.extraction_mem_mb(entry, tmp_path) == 4000 + 8
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
