"""End to end: baselines, untrained seeds and the extras' summaries on a tiny workflow run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lmbrain.features import read_feature_info, read_features
from lmbrain.testing import make_tiny_model

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def run_snakemake(workdir: Path, *args: str):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [SNAKEMAKE, *args, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", str(workdir / "config.yaml")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


STORIES = ["01_farm", "02_fog", "03_kitchen", "12_lighthouse"]


def extras_config(models, glove) -> dict:
    return {
        "seed": 0,
        "datasets": {
            "tiny": {
                "simulate": {
                    "seed": 2,
                    "n_subjects": 1,
                    "voxels_per_hemisphere": 6,
                    "n_repeats": 3,
                    "stories": STORIES,
                }
            }
        },
        "models": [
            {"name": "gpt2-a", "model": str(models / "a"), "family": "tiny"},
            {
                "name": "gpt2-a-untrained",
                "model": str(models / "a"),
                "untrained": True,
                "seeds": [0, 1],
                "family": "tiny",
            },
            {"name": "random", "baseline": "random_vectors", "width": [4, 8], "seeds": [0]},
            {"name": "randemb", "baseline": "random_word_embeddings", "width": 8},
            {"name": "glove", "baseline": "static", "path": str(glove)},
        ],
        "layers": [-1],
        "train_fractions": [1.0],
        "features": {"context_tokens": 8, "stride_tokens": 8, "batch_size": 16, "threads": 1},
        "fitting": {"alphas": [1.0, 100.0], "n_folds": 2},
        "aggregate": {"n_bootstrap": 20},
        "forecast": {
            "enabled": True,
            "distances": [0, 2],
            "models": ["gpt2-a"],
            "control": "random_future",
        },
    }


@pytest.fixture(scope="module")
def extras_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("extras")
    make_tiny_model(root / "models" / "a", arch="gpt2", hidden_size=16, n_layers=1, seed=0)
    glove = root / "glove.txt"
    glove.write_text("the 1 0 0\nfarm 0 1 0\nfog 0 0 1\n")
    workdir = root / "run"
    workdir.mkdir()
    config = extras_config(root / "models", glove)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    res = run_snakemake(workdir, "--cores", "2")
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    return workdir / "results" / "tiny"


def test_baselines_fitted_like_models(extras_run):
    scores = pd.read_csv(extras_run / "summary" / "scores.tsv", sep="\t")
    expected = {
        "gpt2-a",
        "gpt2-a-untrained-s0",
        "gpt2-a-untrained-s1",
        "random-w4-s0",
        "random-w8-s0",
        "randemb",
        "glove",
    }
    assert set(scores["model"]) == expected
    base = scores[scores.model.isin(["random-w4-s0", "random-w8-s0", "randemb", "glove"])]
    assert (base["n_params"] == 0).all() and (base["layer"] == 0).all()
    assert base["untrained"].all() and base["mean_r"].notna().all()
    width = read_feature_info(extras_run / "features" / "random-w4-s0.h5")["hidden_size"]
    assert width == 4
    glove = read_features(extras_run / "features" / "glove.h5", "02_fog", 0)
    assert glove.shape[1] == 3 and (glove.sum(axis=1) <= 1).all()
    assert read_feature_info(extras_run / "features" / "glove.h5")["n_oov"] > 0


def test_untrained_gap_table(extras_run):
    gaps = pd.read_csv(extras_run / "summary" / "baseline_gaps.tsv", sep="\t")
    assert list(gaps["model"]) == ["gpt2-a"]
    row = gaps.iloc[0]
    scores = pd.read_csv(extras_run / "summary" / "scores.tsv", sep="\t").set_index("model")
    untrained = scores.loc[["gpt2-a-untrained-s0", "gpt2-a-untrained-s1"], "mean_r"].mean()
    assert row["gap"] == pytest.approx(scores.loc["gpt2-a", "mean_r"] - untrained, abs=1e-5)
    assert row["n_seeds"] == 2
    # fewer than 3 subjects: no subject-level CI (the table says why); the voxel-only CI brackets the gap
    assert row["n_subjects"] < 3 and "need >= 3 subjects" in row["note"]
    assert np.isnan(row["gap_ci_low"]) and np.isnan(row["gap_ci_high"])
    assert row["gap_ci_low_voxels"] <= row["gap"] + 1e-6 <= row["gap_ci_high_voxels"] + 2e-6


def test_plots_written(extras_run):
    for name in ["scaling_models", "scaling_data", "layers", "asymmetry"]:
        assert (extras_run / "plots" / f"{name}.png").stat().st_size > 10_000
    assert np.isfinite(
        pd.read_csv(extras_run / "summary" / "scaling_fits.tsv", sep="\t")["n_points"]
    ).all()


def test_extrapolation_table(extras_run):
    table = pd.read_csv(extras_run / "summary" / "scaling_extrapolation.tsv", sep="\t")
    params = table[table["fit"] == "params"].set_index("group")
    # one trained size: no fit, said so; baselines and untrained twins never enter
    assert set(params.index) == {"trained", "tiny"}
    assert (params["n_points"] == 1).all() and params["slope"].isna().all()
    assert params["note"].str.contains("no fit").all()


def test_forecast_outputs(extras_run):
    table = pd.read_csv(extras_run / "summary" / "forecast.tsv", sep="\t")
    assert set(table["model"]) == {"gpt2-a"} and set(table["distance"]) == {0, 2}
    assert {"all", "L", "R"} <= set(table["hemisphere"])
    voxels = np.load(extras_run / "forecast" / "sub-01" / "gpt2-a.npz")
    assert voxels["F"].shape == (1, 2, 12) and set(voxels["best_d"]) <= {0, 2}
    np.testing.assert_allclose(voxels["F"], voxels["r"] - voxels["r_base"], atol=1e-6)
    everything = table[(table.hemisphere == "all") & (table.distance == 2)].iloc[0]
    assert everything["mean_F"] == pytest.approx(np.nanmean(voxels["F"][0, 1]), abs=1e-5)
    assert (extras_run / "plots" / "forecast.png").stat().st_size > 10_000
    # the random-future control, computed in the same job
    assert voxels["F_control"].shape == (1, 2, 12) and np.isfinite(voxels["F_control"]).all()
    assert everything["mean_F_control"] == pytest.approx(
        np.nanmean(voxels["F_control"][0, 1]), abs=1e-5
    )
    assert (table["n_subjects"] == 1).all() and (table["n_test_stories"] >= 1).all()
    assert (table["n_train_stories"] >= 1).all() and table["resampling"].notna().all()
    assert (extras_run / "plots" / "forecast_roi.png").stat().st_size > 10_000
    # maps: the simulation writes a mask, so a 4-D NIfTI with the measures named
    from lmbrain.brainmaps import read_volume_map

    maps, _ = read_volume_map(extras_run / "maps" / "sub-01" / "forecast" / "gpt2-a.nii.gz")
    best_d = maps["best_d"][np.isfinite(maps["best_d"])]
    assert best_d.size == 12 and set(best_d) <= {0, 2}
    np.testing.assert_array_equal(np.sort(best_d), np.sort(voxels["best_d"]))
    assert {"r", "F_best", "F_d0", "F_d2", "F_control_d2"} <= set(maps)
    assert (extras_run / "plots" / "forecast_map_sub-01.png").stat().st_size > 10_000
