"""End to end: brain maps, map figures and ROI summaries from a small workflow run.

One run, two one-subject datasets and one tiny model (one layer, one fraction); one model size
means no voxelwise slope map (the run says so; a dry run with a second model plans them, and
tests/test_workflow.py checks their values on a three-model run):

- ``vol``: the simulated demo dataset (volume mask written by the simulation), with an ROI
  atlas given in the config on the mask's grid;
- ``surf``: the same simulation copied into the native layout as fsaverage5 surface data
  (``vertex`` column, ``surface: fsaverage5``), ROIs from the voxel table's ``roi`` column.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from lmbrain.demo import demo_mask, make_demo_dataset
from lmbrain.mapplots import best_fit
from lmbrain.roi import ROI_RESAMPLING
from lmbrain.roi_scaling import ROI_EXTRAPOLATION_COLUMNS, ROI_FIT_COLUMNS
from lmbrain.testing import job_counts, make_tiny_model

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
STORIES = ["01_farm", "02_fog", "03_kitchen", "12_lighthouse"]
SIM = {"seed": 1, "n_subjects": 1, "voxels_per_hemisphere": 8, "n_repeats": 3, "stories": STORIES}
VERTICES = np.array([3, 10, 50, 100, 200, 400, 800, 1600] * 2)
PNG = b"\x89PNG\r\n\x1a\n"


def write_atlas(folder: Path) -> dict:
    """Label 1 (A) on the left blob's first half of its x-extent, 2 (B) elsewhere in the mask."""
    mask, affine = demo_mask(SIM["voxels_per_hemisphere"])
    atlas = np.where(mask, 2, 0).astype(np.int16)
    i = np.argwhere(mask)[:, 0]
    left = np.argwhere(mask)[i < mask.shape[0] // 2]
    atlas[tuple(left[: len(left) // 2].T)] = 1
    nib.save(nib.Nifti1Image(atlas, affine), folder / "atlas.nii.gz")
    (folder / "labels.tsv").write_text("index\tname\n1\tA\n2\tB\n")
    return {"image": str(folder / "atlas.nii.gz"), "labels": str(folder / "labels.tsv")}


def write_surface_dataset(folder: Path) -> Path:
    root = make_demo_dataset(folder / "surf", **SIM)
    (root / "voxels" / "sub-01_mask.nii.gz").unlink()
    table = pd.read_csv(root / "voxels" / "sub-01.tsv", sep="\t")
    table["vertex"] = VERTICES
    table.to_csv(root / "voxels" / "sub-01.tsv", sep="\t", index=False)
    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    (root / "dataset.yaml").write_text(yaml.safe_dump({**meta, "surface": "fsaverage5"}))
    shutil.rmtree(root / "ground_truth")
    return root


@pytest.fixture(scope="module")
def maps_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("maps")
    make_tiny_model(work / "gpt2", arch="gpt2", hidden_size=32, n_layers=2, seed=0)
    # a second size, for the dry run only (building it takes a second; fitting it a minute)
    make_tiny_model(work / "gpt2-small", arch="gpt2", hidden_size=16, n_layers=2, seed=1)
    config = {
        "datasets": {
            "vol": {"simulate": SIM, "roi_atlas": write_atlas(work)},
            "surf": {"format": "native", "path": str(write_surface_dataset(work))},
        },
        "models": [{"name": "tiny", "model": str(work / "gpt2"), "family": "gpt2"}],
        "layers": [1],
        "train_fractions": [1.0],
        "features": {"context_tokens": 16, "stride_tokens": 16, "batch_size": 16, "threads": 1},
        "fitting": {"alphas": [1.0, 100.0], "n_folds": 2},
        "aggregate": {"n_bootstrap": 0},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    cmd = [SNAKEMAKE, "--cores", "2", "--snakefile", str(ROOT / "Snakefile")]
    cmd += ["--directory", str(work), "--configfile", str(work / "config.yaml")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    (work / "run.log").write_text(res.stdout + res.stderr)
    return work / "results"


def test_volume_map_holds_the_fit_through_the_mask(maps_run):
    fit = np.load(maps_run / "vol/fits/sub-01/tiny/layer-1_frac-1.npz")
    img = nib.load(maps_run / "vol/maps/sub-01/tiny/layer-1_frac-1.nii.gz")
    names = yaml.safe_load((maps_run / "vol/maps/sub-01/tiny/layer-1_frac-1.json").read_text())
    mask, affine = demo_mask(SIM["voxels_per_hemisphere"])
    np.testing.assert_allclose(img.affine, affine)
    data = np.asarray(img.dataobj)
    assert names["volumes"][:6] == ["r", "r2", "alpha", "cv_score", "cc_max", "r_norm"]
    for t, name in enumerate(names["volumes"]):
        np.testing.assert_array_equal(data[..., t][mask], fit[name].astype(np.float32))
        assert np.isnan(data[..., t][~mask]).all()


def test_surface_map_holds_the_fit_at_its_vertices(maps_run):
    fit = np.load(maps_run / "surf/fits/sub-01/tiny/layer-1_frac-1.npz")
    for h in "LR":
        gii = nib.load(maps_run / f"surf/maps/sub-01/tiny/layer-1_frac-1_hemi-{h}.func.gii")
        r = next(d.data for d in gii.darrays if d.meta["Name"] == "r")
        assert r.shape == (10242,)
        cols = fit["hemisphere"] == h
        np.testing.assert_array_equal(r[VERTICES[cols]], fit["r"][cols])
        assert np.isnan(np.delete(r, VERTICES[cols])).all()


def test_map_figures_and_roi_summaries(maps_run):
    for name in ["vol", "surf"]:
        for png in ["brainmap_sub-01.png", "roi.png", "roi_scaling.png"]:
            data = (maps_run / name / "plots" / png).read_bytes()
            assert data[:8] == PNG and len(data) > 10_000
    vol = pd.read_csv(maps_run / "vol/summary/scores_roi.tsv", sep="\t")
    assert sorted(vol["roi"].unique()) == ["A", "B"]
    fit = np.load(maps_run / "vol/fits/sub-01/tiny/layer-1_frac-1.npz")
    labels = nib.load(maps_run.parent / "atlas.nii.gz").get_fdata()[
        demo_mask(SIM["voxels_per_hemisphere"])[0]
    ]
    row = vol.set_index(["roi", "hemisphere"]).loc[("B", "both")]
    assert row.n_voxels == int((labels == 2).sum())
    assert row.mean_r == pytest.approx(np.nanmean(fit["r"][labels == 2]), abs=1e-5)
    a_right = vol.set_index(["roi", "hemisphere"]).loc[("A", "R")]
    assert a_right.n_voxels == 0  # A lies in the left blob only
    surf = pd.read_csv(maps_run / "surf/summary/scores_roi.tsv", sep="\t")
    assert set(surf["roi"]) == {"AC", "STS", "IFG", "AG"}
    assert len(surf) == 4 * 3
    assert vol["n_subjects"].eq(1).all() and vol["n_test_stories"].eq(1).all()
    assert vol["resampling"].eq(ROI_RESAMPLING).all()
    # per-ROI scaling fits and extrapolation (one model: rows without a slope)
    fits = pd.read_csv(maps_run / "vol/summary/scaling_fits_roi.tsv", sep="\t")
    assert list(fits.columns) == list(ROI_FIT_COLUMNS)
    assert set(zip(fits["roi"], fits["hemisphere"], fits["fit"], strict=True)) == {
        *((r, h, "params") for r in "AB" for h in ("L", "R", "both") if (r, h) != ("A", "R")),
        ("A", "both", "asymmetry"),
        ("B", "both", "asymmetry"),
    }  # A lies in the left blob only: no right part
    extrapolation = pd.read_csv(maps_run / "vol/summary/scaling_extrapolation_roi.tsv", sep="\t")
    assert list(extrapolation.columns) == list(ROI_EXTRAPOLATION_COLUMNS)
    assert sorted(extrapolation["roi"].unique()) == ["A", "B"]


def test_near_ceiling_table_counts_the_best_fit(maps_run):
    for name in ["vol", "surf"]:
        scores = pd.read_csv(maps_run / name / "summary/scores.tsv", sep="\t")
        best = best_fit(scores, "sub-01")
        table = pd.read_csv(maps_run / name / "summary/near_ceiling.tsv", sep="\t")
        assert table["model"].tolist() == [best["model"]] * 3
        assert table["hemisphere"].tolist() == ["L", "R", "both"]
        fit = np.load(maps_run.parent / best["fit_path"])
        for _, row in table.iterrows():
            hemi = np.ones(fit["r"].size, bool) if row.hemisphere == "both" else None
            hemi = fit["hemisphere"] == row.hemisphere if hemi is None else hemi
            usable = fit["r_norm"][hemi & np.isfinite(fit["r_norm"])]
            assert row.n_voxels == hemi.sum() and row.n_usable_ceiling == usable.size > 0
            assert row["frac_ge_0.5"] == pytest.approx(np.mean(usable >= 0.5), abs=1e-6)
            assert row["frac_ge_0.8"] == pytest.approx(np.mean(usable >= 0.8), abs=1e-6)
            assert row.median_r_norm == pytest.approx(np.median(usable), abs=1e-5)
        data = (maps_run / name / "plots/ceiling_scatter.png").read_bytes()
        assert data[:8] == PNG and len(data) > 10_000


def test_slope_maps_need_two_model_sizes(maps_run):
    work = maps_run.parent
    run_log = (work / "run.log").read_text()
    for name in ["vol", "surf"]:
        assert f"dataset '{name}': no voxelwise slope maps (1 trained" in run_log
        assert not list((maps_run / name).glob("**/*scaling-slope*"))
        assert not (maps_run / name / "plots/slope_map_sub-01.png").exists()
    # a second size plans one slope map per subject, in each dataset's form, and its figure
    config = yaml.safe_load((work / "config.yaml").read_text())
    small = {"name": "tinier", "model": str(work / "gpt2-small"), "family": "gpt2"}
    (work / "two-models.yaml").write_text(
        yaml.safe_dump({**config, "models": [*config["models"], small]})
    )
    cmd = [SNAKEMAKE, "-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work)]
    cmd += ["--configfile", str(work / "two-models.yaml")]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    counts = job_counts(res.stdout + res.stderr)
    assert counts["scaling_slope_map_volume"] == 1 and counts["scaling_slope_map_surface"] == 1
    assert counts["plot_slope_map"] == 2 and "scaling_slope_map_vector" not in counts
    assert not any(rule.startswith("scaling_slope_group") for rule in counts)  # one subject
    assert "results/surf/maps/sub-01/scaling-slope_hemi-L.func.gii" in res.stdout
