"""Per-voxel best layer (lmbrain.voxel_layers) against planted layers."""

import numpy as np
import pytest

from lmbrain.voxel_layers import parse_fit_name, voxel_best_layer, voxel_best_layer_summary


def test_planted_layer_per_voxel_is_recovered_by_cv_not_test_score():
    rng = np.random.default_rng(0)
    layers, n_vox, n_layers = [0, 2, 4, 6, 8], 300, 8
    planted = rng.choice(layers, n_vox)
    cv = rng.normal(0.0, 0.01, (len(layers), n_vox))
    for j, layer in enumerate(layers):
        cv[j, planted == layer] += 0.2  # the planted layer wins on the training CV
    test_r = rng.normal(0.1, 0.05, (len(layers), n_vox))
    test_r[-1] += 1.0  # the test score would always pick the deepest layer
    # shuffle the row order: the result must not depend on it
    perm = rng.permutation(len(layers))
    out = voxel_best_layer(np.array(layers)[perm], cv[perm], test_r[perm], n_layers)
    np.testing.assert_array_equal(out["best_layer"], planted)
    np.testing.assert_allclose(out["best_depth"], planted / n_layers)
    idx = np.searchsorted(layers, planted)
    np.testing.assert_allclose(out["r"], test_r[idx, np.arange(n_vox)])


def test_nan_voxels_ties_and_shapes():
    cv = np.array([[np.nan, 0.5, 0.2], [np.nan, 0.5, np.nan]])
    r = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    out = voxel_best_layer([3, 1], cv, r, 4)
    assert np.isnan(out["best_layer"][0]) and np.isnan(out["r"][0])
    assert out["best_layer"][1] == 1  # tie goes to the shallower layer
    assert out["best_layer"][2] == 3 and out["r"][2] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="n_voxels"):
        voxel_best_layer([1], cv, r, 4)


def test_summary_depth_by_hemisphere():
    arrays = {"r": np.array([0.1, 0.3, np.nan, 0.5]), "best_depth": np.array([0.25, 0.75, 0.5, 1])}
    s = voxel_best_layer_summary(arrays, np.array(["L", "L", "R", "r"]))
    assert s["mean_best_depth_left"] == pytest.approx(0.5)
    assert s["mean_best_depth_right"] == pytest.approx(0.75)
    assert s["mean_r_voxel_best"] == pytest.approx(0.3)
    assert s["median_best_depth"] == pytest.approx(0.625)


def test_parse_fit_name():
    assert parse_fit_name("layer-12_frac-0.5") == (12, "0.5")
    assert parse_fit_name("voxel-best-layer_frac-1.0") is None


def test_maps_and_summary_written_from_fit_files(tmp_path):
    import json

    import pandas as pd

    from lmbrain.voxel_layers import write_voxel_best_layer_maps

    rng = np.random.default_rng(1)
    n_vox, planted = 20, np.array([1, 3] * 10)
    fits = []
    for layer in (1, 2, 3):
        for frac in ("0.5", "1.0"):
            path = tmp_path / f"layer-{layer}_frac-{frac}.npz"
            cv = rng.normal(0, 0.01, n_vox) + 0.2 * (planted == layer)
            hemi = np.array(["L", "R"] * 10)
            np.savez(path, r=rng.normal(0.1, 0.01, n_vox), cv_score=cv, hemisphere=hemi)
            path.with_suffix(".json").write_text(json.dumps({"n_layers": 4}))
            fits.append(path)
    fits.append(tmp_path / "layer-2_frac-0.25.npz")  # one layer only: no best-layer map
    np.savez(fits[-1], r=np.zeros(n_vox), cv_score=np.zeros(n_vox), hemisphere=hemi)
    out = tmp_path / "maps"
    out.mkdir()
    rows = write_voxel_best_layer_maps(fits, None, out)
    assert [r["train_fraction"] for r in rows] == [0.5, 1.0]
    vec = np.load(out / "voxel-best-layer_frac-1.0.npz")
    np.testing.assert_array_equal(vec["best_layer"], planted)
    table = pd.read_csv(out / "voxel-best-layer_frac-0.5.tsv", sep="\t")
    # planted layers 1 (left voxels) and 3 (right) of 4
    assert table.loc[0, "mean_best_depth_left"] == pytest.approx(0.25)
    assert table.loc[0, "mean_best_depth_right"] == pytest.approx(0.75)
    assert not (out / "voxel-best-layer_frac-0.25.npz").exists()
