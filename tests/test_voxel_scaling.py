"""Voxelwise scaling maps and near-ceiling counts against brute force and planted truth."""

import numpy as np
import pandas as pd
import pytest

from lmbrain import brainmaps, mapplots
from lmbrain.demo import demo_mask
from lmbrain.errors import InputError
from lmbrain.geometry import SurfaceGeometry, VolumeGeometry
from lmbrain.near_ceiling import near_ceiling_rows, near_ceiling_table
from lmbrain.voxel_scaling import (
    N_SUBJECTS,
    SLOPE_MEASURES,
    same_space,
    scaling_rows,
    voxel_loglinear_fits,
    write_group_mean_map,
    write_subject_slope_map,
)

PNG = b"\x89PNG\r\n\x1a\n"
N_PARAMS = {"s": 10**8, "m": 10**9, "l": 10**10, "xl": 3 * 10**10}


def test_voxel_fits_equal_polyfit_on_each_voxel():
    rng = np.random.default_rng(0)
    lx = np.log10([1.2e8, 3.5e8, 1e9, 7e9, 3e10])
    y = rng.normal(0.1, 0.05, (5, 40))
    y[1, 3] = np.nan  # one model missing in one voxel: fitted on the other four
    y[:, 7] = 0.25  # constant voxel: slope 0, r2 undefined
    y[:4, 9] = np.nan  # one point left: no slope
    out = voxel_loglinear_fits(lx, y)
    for v in range(y.shape[1]):
        keep = np.isfinite(y[:, v])
        assert out["n_models"][v] == keep.sum()
        if keep.sum() < 2:
            assert np.isnan(out["slope"][v]) and np.isnan(out["intercept"][v])
            continue
        b, a = np.polyfit(lx[keep], y[keep, v], 1)
        assert out["slope"][v] == pytest.approx(b, abs=1e-10)
        assert out["intercept"][v] == pytest.approx(a, abs=1e-10)
        if v == 7:
            assert np.isnan(out["r2"][v])
            continue
        pred = a + b * lx[keep]
        resid = y[keep, v] - pred
        r2 = 1 - resid @ resid / np.sum((y[keep, v] - y[keep, v].mean()) ** 2)
        assert out["r2"][v] == pytest.approx(r2, abs=1e-10)
    with pytest.raises(ValueError, match="n_points=5"):
        voxel_loglinear_fits(lx, y[:4])


def score_rows(fit_paths, subject="sub-01"):
    """Score rows of models s, m, l, xl (two layers, two fractions) plus an untrained twin
    and a baseline that must stay out of the slope."""
    rows = []
    models = {**{m: (False, n) for m, n in N_PARAMS.items()}, "u": (True, 10**9), "b": (True, 0)}
    for model, (untrained, n_params) in models.items():
        for layer in (1, 2):
            for frac in (0.5, 1.0):
                rows.append(
                    {
                        "dataset": "d",
                        "subject": subject,
                        "model": model,
                        "untrained": untrained,
                        "n_params": n_params,
                        "layer": layer,
                        "train_fraction": frac,
                        # the CV score picks layer 2 at fraction 1
                        "mean_cv_score": 0.2 if (layer == 2 and frac == 1.0) else 0.1,
                        "mean_r": 0.0,
                        "fit_path": fit_paths[(model, layer, frac)],
                    }
                )
    return pd.DataFrame(rows)


def planted(n_vox, seed=0):
    """Fits whose chosen layer has r = 0.1 + 0.05 * log10(n_params / 1e8) in the first half
    of the voxels and r = 0.2 in the other half; the other layers and fractions, the
    untrained twin and the baseline hold values that would spoil the slope if used."""
    rng = np.random.default_rng(seed)
    truth = np.where(np.arange(n_vox) < n_vox // 2, 0.05, 0.0)
    hemi = np.where(np.arange(n_vox) % 2 == 0, "L", "R")
    arrays, paths = {}, {}
    for model in [*N_PARAMS, "u", "b"]:
        for layer in (1, 2):
            for frac in (0.5, 1.0):
                key = (model, layer, frac)
                paths[key] = f"{model}-{layer}-{frac}"
                if model in N_PARAMS and layer == 2 and frac == 1.0:
                    lx = np.log10(N_PARAMS[model] / 1e8)
                    r = np.where(truth > 0, 0.1 + 0.05 * lx, 0.2)
                else:
                    r = rng.uniform(-1, 1, n_vox)
                arrays[paths[key]] = {"r": r, "hemisphere": hemi}
    return truth, hemi, paths, arrays


def test_scaling_rows_keep_trained_models_at_their_cv_layer():
    _, _, paths, _ = planted(4)
    rows = scaling_rows(score_rows(paths), "sub-01")
    assert rows["model"].tolist() == ["s", "m", "l", "xl"]  # by n_params; no twin, no baseline
    assert set(rows["layer"]) == {2} and set(rows["train_fraction"]) == {1.0}
    assert scaling_rows(score_rows(paths), "sub-09").empty


def test_slope_map_recovers_a_planted_slope_and_round_trips(tmp_path):
    mask, affine = demo_mask(20)
    geo = VolumeGeometry(mask, affine)
    truth, _, paths, arrays = planted(geo.n_voxels)
    info = write_subject_slope_map(
        score_rows(paths), "sub-01", geo, tmp_path / "slope", load_voxels=arrays.__getitem__
    )
    assert info["note"] == "" and info["models"] == ["s", "m", "l", "xl"]
    maps, aff = brainmaps.read_volume_map(info["files"]["image"])
    np.testing.assert_allclose(aff, affine)
    assert list(maps) == list(SLOPE_MEASURES)
    np.testing.assert_allclose(maps["slope"][mask], truth, atol=1e-6)
    np.testing.assert_allclose(maps["intercept"][mask], np.where(truth > 0, -0.3, 0.2), atol=1e-5)
    np.testing.assert_allclose(maps["r2"][mask][truth > 0], 1.0, atol=1e-6)
    assert np.isnan(maps["r2"][mask][truth == 0]).all()  # flat voxels: r2 undefined
    assert (maps["n_models"][mask] == 4).all()
    assert np.isnan(maps["slope"][~mask]).all()
    mapplots.plot_brain_map("volume", info["files"], "t", tmp_path / "v.png", measure="slope")
    assert (tmp_path / "v.png").read_bytes()[:8] == PNG


def test_surface_and_vector_slope_maps_round_trip(tmp_path):
    truth, hemi, paths, arrays = planted(12)
    vertex = np.r_[np.arange(6) * 3, np.arange(6) * 5]
    order = np.argsort(hemi, kind="stable")  # the geometry lists L columns, then R
    hemi_cols = hemi[order]
    geo = SurfaceGeometry("fsaverage5", hemi_cols, vertex, {"L": 10242, "R": 10242})
    arrays = {k: {"r": v["r"][order], "hemisphere": hemi_cols} for k, v in arrays.items()}
    truth = truth[order]
    info = write_subject_slope_map(
        score_rows(paths, "s1"), "s1", geo, tmp_path / "m", arrays.__getitem__
    )
    for h in "LR":
        maps, mesh = brainmaps.read_surface_map(info["files"][h])
        assert mesh == "fsaverage5" and maps["slope"].shape == (10242,)
        cols = hemi_cols == h
        np.testing.assert_allclose(maps["slope"][vertex[cols]], truth[cols], atol=1e-6)
        assert np.isnan(np.delete(maps["slope"], vertex[cols])).all()
    info = write_subject_slope_map(
        score_rows(paths, "s1"), "s1", None, tmp_path / "v", arrays.__getitem__
    )
    with np.load(info["files"]["vector"]) as npz:
        np.testing.assert_allclose(npz["slope"], truth, atol=1e-6)
        assert npz["hemisphere"].tolist() == hemi_cols.tolist()


def test_one_model_size_gives_a_nan_map_with_a_note(tmp_path):
    _, _, paths, arrays = planted(6)
    table = score_rows(paths)
    table = table[table["model"].isin(["m", "u", "b"])]
    info = write_subject_slope_map(table, "sub-01", None, tmp_path / "v", arrays.__getitem__)
    assert "1 trained model size" in info["note"]
    with np.load(info["files"]["vector"]) as npz:
        assert np.isnan(npz["slope"]).all() and (npz["n_models"] == 0).all()


def test_group_mean_of_volume_and_surface_maps(tmp_path):
    mask, affine = demo_mask(20)
    geo = VolumeGeometry(mask, affine)
    other = mask.copy()
    other[tuple(np.argwhere(mask)[0])] = False  # the second subject lacks one voxel
    geo2 = VolumeGeometry(other, affine)
    assert same_space([geo, geo2]) and not same_space([geo])
    assert not same_space([geo, VolumeGeometry(mask, affine * 2)])
    assert not same_space([None, None])
    prefixes, slopes = [], []
    for i, g in enumerate([geo, geo2]):
        truth, _, paths, arrays = planted(g.n_voxels, seed=i)
        scale = 1 + i  # subject 2's slopes are twice subject 1's
        arrays = {k: {**v, "r": v["r"] * scale} for k, v in arrays.items()}
        write_subject_slope_map(score_rows(paths), "sub-01", g, tmp_path / f"s{i}", arrays.get)
        full = np.full(mask.shape, np.nan)
        full[g.mask] = truth * scale
        slopes.append(full)
        prefixes.append(tmp_path / f"s{i}")
    info = write_group_mean_map("volume", prefixes, tmp_path / "mean")
    maps, _ = brainmaps.read_volume_map(info["files"]["image"])
    np.testing.assert_allclose(
        maps["slope"][mask], np.nanmean([s[mask] for s in slopes], axis=0), atol=1e-6
    )
    n = maps[N_SUBJECTS][mask]
    assert n[0] == 1 and (n[1:] == 2).all()
    surf = SurfaceGeometry("fsaverage5", np.array(["L", "R"] * 3), np.arange(6), {"L": 50, "R": 50})
    for i in range(2):
        _, _, paths, arrays = planted(6, seed=i)
        arrays = {k: {**v, "hemisphere": surf.hemisphere} for k, v in arrays.items()}
        write_subject_slope_map(score_rows(paths), "sub-01", surf, tmp_path / f"f{i}", arrays.get)
    info = write_group_mean_map("surface", [tmp_path / "f0", tmp_path / "f1"], tmp_path / "fm")
    maps, mesh = brainmaps.read_surface_map(info["files"]["L"])
    assert mesh == "fsaverage5" and (maps[N_SUBJECTS][[0, 2, 4]] == 2).all()
    with pytest.raises(InputError, match="another grid"):
        coarse = VolumeGeometry(mask[::2], affine)
        _, _, paths, arrays = planted(coarse.n_voxels)
        write_subject_slope_map(score_rows(paths), "sub-01", coarse, tmp_path / "c", arrays.get)
        write_group_mean_map("volume", [prefixes[0], tmp_path / "c"], tmp_path / "bad")


def test_near_ceiling_fractions_match_a_direct_count(tmp_path):
    rng = np.random.default_rng(3)
    n = 200
    hemi = np.where(rng.random(n) < 0.4, "L", "R")
    r_norm = rng.uniform(-0.2, 1.1, n)
    r_norm[rng.random(n) < 0.3] = np.nan  # ceiling below scoring.min_cc_max
    rows = {row["hemisphere"]: row for row in near_ceiling_rows(r_norm, hemi)}
    for h in ("L", "R", "both"):
        sel = np.ones(n, bool) if h == "both" else hemi == h
        usable = [v for v, s in zip(r_norm, sel, strict=True) if s and v == v]
        assert rows[h]["n_voxels"] == sel.sum()
        assert rows[h]["n_usable_ceiling"] == len(usable)
        assert rows[h]["frac_ge_0.5"] == sum(v >= 0.5 for v in usable) / len(usable)
        assert rows[h]["frac_ge_0.8"] == sum(v >= 0.8 for v in usable) / len(usable)
        assert rows[h]["median_r_norm"] == np.median(usable)
    none = {row["hemisphere"]: row for row in near_ceiling_rows(np.full(4, np.nan), ["L"] * 4)}
    assert none["L"]["n_usable_ceiling"] == 0 and np.isnan(none["L"]["frac_ge_0.5"])
    arrays = {
        "f": {"r": r_norm * 0.5, "r_norm": r_norm, "cc_max": np.full(n, 0.5), "hemisphere": hemi}
    }
    fits = pd.DataFrame(
        [
            {
                "dataset": "d",
                "subject": "s",
                "model": "m",
                "layer": 3,
                "train_fraction": 1.0,
                "fit_path": "f",
            }
        ]
    )
    table = near_ceiling_table(fits, arrays.__getitem__)
    assert table["hemisphere"].tolist() == ["L", "R", "both"]
    assert table.set_index("hemisphere").loc["both", "frac_ge_0.5"] == rows["both"]["frac_ge_0.5"]
    panel = {
        "title": "s",
        "r": arrays["f"]["r"],
        "cc_max": arrays["f"]["cc_max"],
        "usable": np.isfinite(r_norm),
    }
    mapplots.plot_ceiling_scatter(
        [panel, {**panel, "cc_max": np.full(n, np.nan)}], tmp_path / "c.png"
    )
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG
