"""End to end: the workflow on a tiny config (tiny models built from a config, few voxels).

One workflow run (module-scoped) is checked for its outputs, its reproducibility, its report
and for incremental reruns (dry runs of changed configs against it: which jobs Snakemake would
run, with its default rerun triggers mtime, params, input, code and software-env); bad inputs
are checked to stop the run with an error that names the file, leaving no output behind.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lmbrain.brainmaps import read_volume_map
from lmbrain.demo import demo_mask
from lmbrain.features import read_feature_times
from lmbrain.testing import job_counts, make_tiny_audio_model, make_tiny_model

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
STORIES = ["01_farm", "02_fog", "03_kitchen", "04_train", "12_lighthouse"]
SCORE_COLUMNS = (
    "dataset subject model n_params layer depth train_fraction n_train_trs "
    "mean_r mean_r_left mean_r_right mean_r_norm"
).split()


def run_snakemake(workdir: Path, *args: str, config: str = "config.yaml"):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    # Targets and options first: `--configfile` takes every word that follows it.
    cmd = [SNAKEMAKE, *args, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", str(workdir / config)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)


def tiny_config(models: Path) -> dict:
    return {
        "seed": 0,
        "datasets": {
            "tiny": {
                "simulate": {
                    "seed": 1,
                    "n_subjects": 3,  # the third one is for the "add a subject" rerun
                    "voxels_per_hemisphere": 8,
                    "n_repeats": 4,
                    "stories": STORIES,
                    "audio": True,
                },
                "subjects": ["sub-01", "sub-02"],
            }
        },
        "models": [
            {"name": "tiny-gpt2", "model": str(models / "gpt2"), "family": "gpt2"},
            {"name": "tiny-llama", "model": str(models / "llama"), "family": "llama"},
            {
                "name": "tiny-gpt2-untrained",
                "model": str(models / "gpt2"),
                "untrained": True,
                "seed": 3,
            },
            {
                "name": "tiny-hubert",
                "model": str(models / "hubert"),
                "family": "hubert",
                "layers": [-1],
                "train_fractions": [1.0],
            },
        ],
        "layers": [0, -1],  # embeddings and last block; "all" adds the middle one
        "train_fractions": [0.5, 1.0],
        "features": {
            "context_tokens": 16,
            "stride_tokens": 16,
            "batch_size": 16,
            "audio_context_s": 1.0,
            "audio_stride_s": 1.0,
        },
        "fitting": {"alphas": {"logspace": [0, 4, 5]}, "n_folds": 3},
        "aggregate": {"n_bootstrap": 50},
        "banded": [
            {
                "name": "gpt2+llama",
                "bands": [{"model": "tiny-gpt2", "layer": -1}, {"model": "tiny-llama", "layer": 1}],
                "n_iter": 5,
            }
        ],
    }


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    make_tiny_model(models / "gpt2", arch="gpt2", hidden_size=32, n_layers=2, seed=0)
    make_tiny_model(models / "llama", arch="llama", hidden_size=48, n_layers=2, seed=1)
    make_tiny_audio_model(models / "hubert", arch="hubert", n_layers=2, seed=2)
    return models


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory, tiny_models):
    workdir = tmp_path_factory.mktemp("run")
    config = tiny_config(tiny_models)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    res = run_snakemake(workdir, "--cores", "2")
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    return workdir, config


def test_outputs_complete(workflow_run):
    workdir, config = workflow_run
    out = workdir / "results" / "tiny"
    scores = pd.read_csv(out / "summary" / "scores.tsv", sep="\t")
    assert set(SCORE_COLUMNS) <= set(scores.columns)
    # 2 subjects x 3 models x 2 hidden states (embeddings, last of 2 blocks) x 2 fractions,
    # and the speech model's last layer at the full fraction
    assert len(scores) == 2 * 3 * 2 * 2 + 2
    assert set(scores["layer"]) == {0, 2}
    np.testing.assert_allclose(scores["depth"], scores["layer"] / scores["n_layers"])
    half = scores[scores.train_fraction == 0.5].set_index(["subject", "model", "layer"])
    full = scores[scores.train_fraction == 1.0].set_index(["subject", "model", "layer"])
    full = full.loc[half.index]  # models fitted at both fractions
    assert len(full) == 2 * 3 * 2 and (full.n_train_trs > half.n_train_trs).all()
    assert scores["mean_r"].notna().all()
    fits = pd.read_csv(out / "summary" / "scaling_fits.tsv", sep="\t")
    assert {"params", "data", "asymmetry"} <= set(fits["fit"])
    assert {"slope", "intercept", "slope_ci_low", "slope_ci_high"} <= set(fits.columns)
    # two subjects: voxel-only CIs, the subject-level ones withheld with a note
    params = fits[fits["fit"] == "params"].iloc[0]
    assert params["slope_ci_low_voxels"] <= params["slope"] <= params["slope_ci_high_voxels"]
    assert np.isnan(params["slope_ci_low"]) and "(have 2)" in params["note"]
    assert (fits["n_subjects"] == 2).all() and (fits["n_voxels"] > 0).all()
    sig = scores["n_voxels_significant"]
    assert ((sig >= 0) & (sig <= scores["n_voxels"])).all()
    assert (scores["significance_method"] == "phase_randomization").all()
    for name in ["scaling_models", "scaling_data", "layers", "asymmetry"]:
        png = (out / "plots" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    voxels = np.load(out / "fits" / "sub-01" / "tiny-gpt2" / "layer-2_frac-1.npz")
    for key in ["r", "r2", "alpha", "cc_max", "r_norm", "p", "q", "hemisphere"]:
        assert voxels[key].shape == (16,)
    assert np.all((voxels["p"] >= 1 / 1001) & (voxels["p"] <= 1) & (voxels["q"] >= voxels["p"]))
    row = scores.set_index(["subject", "model", "layer", "train_fraction"]).loc[
        ("sub-01", "tiny-gpt2", 2, 1.0)
    ]
    assert row.mean_r == pytest.approx(np.nanmean(voxels["r"]), abs=1e-5)
    left = voxels["hemisphere"] == "L"
    assert row.mean_r_left == pytest.approx(np.nanmean(voxels["r"][left]), abs=1e-5)


def test_slope_maps_fit_r_against_model_size_in_every_voxel(workflow_run):
    workdir, _ = workflow_run
    out = workdir / "results" / "tiny"
    scores = pd.read_csv(out / "summary" / "scores.tsv", sep="\t")
    top = scores[
        (scores["train_fraction"] == 1.0) & ~scores["untrained"] & (scores["n_params"] > 0)
    ]
    mask, _ = demo_mask(8)
    slopes = []
    for subject in ["sub-01", "sub-02"]:
        rows = top[top["subject"] == subject].sort_values(["model", "layer"])
        # each trained model's layer by its cross-validated score (brute force: a plain max)
        best = [g.loc[g["mean_cv_score"].idxmax()] for _, g in rows.groupby("model")]
        assert {b["model"] for b in best} == {"tiny-gpt2", "tiny-llama", "tiny-hubert"}
        lx = np.log10([b["n_params"] for b in best])
        r = np.stack([np.load(workdir / b["fit_path"])["r"] for b in best])
        expected = np.array([np.polyfit(lx, r[:, v], 1)[0] for v in range(r.shape[1])])
        maps, _ = read_volume_map(out / "maps" / subject / "scaling-slope.nii.gz")
        np.testing.assert_allclose(maps["slope"][mask], expected, rtol=1e-4, atol=1e-6)
        assert (maps["n_models"][mask] == 3).all()
        png = (out / "plots" / f"slope_map_{subject}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        slopes.append(expected)
    # the simulated subjects share the demo mask: their voxelwise mean is written
    group, _ = read_volume_map(out / "maps" / "scaling-slope_mean.nii.gz")
    np.testing.assert_allclose(group["slope"][mask], np.mean(slopes, axis=0), rtol=1e-4, atol=1e-6)
    assert (group["n_subjects"][mask] == 2).all()


def test_banded_outputs(workflow_run):
    workdir, _ = workflow_run
    out = workdir / "results" / "tiny"
    table = pd.read_csv(out / "summary" / "banded.tsv", sep="\t")
    assert set(table["band"]) == {"tiny-gpt2", "tiny-llama"}
    assert set(table["hemisphere"]) == {"all", "L", "R"}
    vox = np.load(out / "banded" / "sub-01" / "gpt2+llama.npz")
    shares = vox["split_r2_tiny-gpt2"] + vox["split_r2_tiny-llama"]
    np.testing.assert_allclose(shares, vox["r2"], atol=1e-4)  # shares sum to the joint R^2
    parts = vox["unique_tiny-gpt2"] + vox["unique_tiny-llama"] + vox["shared"]
    np.testing.assert_allclose(parts, vox["r2"], rtol=1e-4, atol=1e-5)
    mine = table[(table.subject == "sub-01") & (table.hemisphere == "L")].set_index("band")
    left = vox["hemisphere"] == "L"
    assert mine.loc["tiny-llama", "mean_split_r2"] == pytest.approx(
        np.nanmean(vox["split_r2_tiny-llama"][left]), abs=1e-5
    )
    png = (out / "plots" / "banded.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_speech_model_features_are_timed_windows(workflow_run):
    workdir, _ = workflow_run
    out = workdir / "results" / "tiny"
    files = sorted((out / "features").glob("*.h5"))  # the speech model's and 3 text models'
    timed = {p.name: read_feature_times(p, "02_fog") for p in files}
    speech = [name for name, times in timed.items() if times is not None]
    assert len(files) == 4 and len(speech) == 1 and speech[0].startswith("hubert")
    np.testing.assert_allclose(np.diff(timed[speech[0]]), 1.0)  # audio_stride_s
    scores = pd.read_csv(out / "summary" / "scores.tsv", sep="\t")
    speech = scores[scores.model == "tiny-hubert"]
    assert len(speech) == 2 and speech["layer"].eq(2).all() and speech["mean_r"].notna().all()


def test_nothing_left_to_do(workflow_run):
    workdir, _ = workflow_run
    res = run_snakemake(workdir, "-n")
    assert res.returncode == 0, res.stderr
    assert job_counts(res.stdout + res.stderr) == {}


def test_adding_a_model_reruns_only_its_jobs(workflow_run, tiny_models):
    workdir, config = workflow_run
    bigger = copy.deepcopy(config)
    bigger["models"].append(
        {"name": "tiny-llama-untrained", "model": str(tiny_models / "llama"), "untrained": True}
    )
    (workdir / "config_more.yaml").write_text(yaml.safe_dump(bigger))
    res = run_snakemake(workdir, "-n", config="config_more.yaml")
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout + res.stderr)
    assert counts == {
        "all": 1,
        "extract_features": 1,
        **refits(2 * 2, maps=2),  # its 2 layers of 2 subjects (both fractions in each job)
        **AGGREGATES,
    }, res.stdout


# -- incremental reruns: the jobs `snakemake -n` lists for a changed config ---------------------
# every change of a fit reruns the summaries, figures, ROI table and each subject's map figure
AGGREGATES = {
    "summarize_scores": 1,
    "plot_scaling": 1,
    "record_config": 1,
    "summarize_rois": 1,
    "plot_rois": 1,
    "plot_brain_map": 2,
    "baseline_gaps": 1,  # rules/extras.smk
    "scaling_extrapolation": 1,
    "near_ceiling": 1,  # reads the score table (rules/maps.smk)
    "best_layer_table": 1,  # reads the score table and the per-voxel best layers
}
# a change of a trained model's fits reruns each subject's voxelwise slope map and figure, and
# their mean (the simulated subjects share the demo mask); untrained models are not in them
SLOPES = {"scaling_slope_map_volume": 2, "plot_slope_map": 2, "scaling_slope_group_volume": 1}
# A fit job fits every train fraction of one (subject, model, layer) (rules/fit.smk): the text
# models' jobs (subjects x models x layers) are `fit_encoding_model` (train_fractions 0.5 and
# 1), the speech model's (its own [1.0], one layer) `fit_encoding_model_1`. A map job writes
# the maps of every fit of one (subject, model) (rules/maps.smk).
N_FIT_JOBS = 2 * 3 * 2
N_MAP_JOBS = 2 * 4
BANDED = {"fit_banded": 2, "summarize_banded": 1}  # the banded model of gpt2 + llama


def refits(jobs: int, maps: int, speech: int = 0) -> dict:
    """Fit jobs of the text models and of the speech model, and map jobs, that run again."""
    counts = {"fit_encoding_model": jobs, "brain_maps": maps}
    return {**counts, "fit_encoding_model_1": speech} if speech else counts


def add_subject(cfg):
    cfg["datasets"]["tiny"]["subjects"].append("sub-03")


def add_layer(cfg):
    cfg["layers"] = "all"  # adds layer 1 of every model


def add_fraction(cfg):
    cfg["train_fractions"] = [0.5, 0.75, 1.0]


def change_alphas(cfg):
    cfg["fitting"]["alphas"] = [1.0, 100.0]


def change_delays(cfg):
    cfg["temporal"] = {"delays": [1, 2]}


def change_context(cfg):
    cfg["features"]["context_tokens"] = 8


def change_model_context(cfg):
    cfg["models"][1]["context_tokens"] = 8  # tiny-llama only


def rename_model(cfg):
    cfg["models"][0]["name"] = "gpt2-renamed"  # same source: same features, new fits
    cfg["banded"][0]["bands"][0]["model"] = "gpt2-renamed"  # (a new band label: refit)


def change_execution_settings(cfg):
    cfg["features"]["batch_size"] = 4
    cfg["features"]["threads"] = 1
    cfg["cluster"] = {"fit_gpus": 1, "fit_partition": "cpu"}


RERUNS = {
    add_subject: {
        "validate_subject": 1,
        "noise_ceiling": 1,
        **refits(3 * 2, maps=4, speech=1),
        "fit_banded": 1,
        "summarize_banded": 1,
        **AGGREGATES,
        "plot_brain_map": 3,
        # the new subject's slope map and figure, and the mean (the others' maps stay)
        "scaling_slope_map_volume": 1,
        "plot_slope_map": 1,
        "scaling_slope_group_volume": 1,
    },
    # the new layer's jobs; each (subject, model) map job rewrites all its maps (the speech
    # model lists its own layer)
    add_layer: {**refits(2 * 3 * 1, maps=2 * 3), **AGGREGATES, **SLOPES},
    # a new fraction is a new output of every job of the models that fit it: their old
    # fractions are refitted too (the speech model lists its own fractions)
    add_fraction: {**refits(N_FIT_JOBS, maps=2 * 3), **AGGREGATES, **SLOPES},
    change_alphas: {
        **refits(N_FIT_JOBS, maps=N_MAP_JOBS, speech=2),
        **BANDED,
        **AGGREGATES,
        **SLOPES,
    },
    change_delays: {
        **refits(N_FIT_JOBS, maps=N_MAP_JOBS, speech=2),
        **BANDED,
        **AGGREGATES,
        **SLOPES,
    },
    # a speech model's features do not depend on token settings
    change_context: {
        "extract_features": 3,
        **refits(N_FIT_JOBS, maps=2 * 3),
        **BANDED,
        **AGGREGATES,
        **SLOPES,
    },
    change_model_context: {
        "extract_features": 1,
        **refits(2 * 1 * 2, maps=2),
        **BANDED,
        **AGGREGATES,
        **SLOPES,
    },
    rename_model: {**refits(2 * 1 * 2, maps=2), **BANDED, **AGGREGATES, **SLOPES},
    # the recorded config shows execution settings; nothing else depends on them
    change_execution_settings: {"record_config": 1},
}


@pytest.mark.parametrize("change", list(RERUNS), ids=[f.__name__ for f in RERUNS])
def test_incremental_rerun_jobs(workflow_run, change):
    workdir, config = workflow_run
    changed = copy.deepcopy(config)
    change(changed)
    name = f"config_{change.__name__}.yaml"
    (workdir / name).write_text(yaml.safe_dump(changed))
    res = run_snakemake(workdir, "-n", config=name)
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_counts(res.stdout + res.stderr) == {"all": 1, **RERUNS[change]}, res.stdout


def test_models_with_one_source_share_features(tmp_path, tiny_models):
    """Two entries naming one model (other names, layers) need one extraction job."""
    config = tiny_config(tiny_models)
    gpt2 = str(tiny_models / "gpt2")
    config["banded"] = []
    config["models"] = [
        {"name": "first", "model": gpt2},
        {"name": "second", "model": gpt2 + "/", "layers": [1], "family": "x"},
        {"name": "twin", "model": gpt2, "untrained": True, "seed": 3},
    ]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    res = run_snakemake(tmp_path, "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    counts = job_counts(res.stdout + res.stderr)
    assert counts["extract_features"] == 2  # the trained model once, its untrained twin
    assert counts["fit_encoding_model"] == 2 * (2 + 1 + 2)  # subjects x layers (2 fractions each)
    assert res.stdout.count("features/gpt2_") >= 1 and "features/first" not in res.stdout


def test_rerun_reproduces_numbers(workflow_run):
    workdir, _ = workflow_run
    rel = "results/tiny/fits/sub-02/tiny-llama/layer-2_frac-0.5.npz"  # relative to --directory
    target = workdir / rel
    before = dict(np.load(target))
    res = run_snakemake(workdir, rel, "--cores", "1", "--forcerun", rel)
    assert res.returncode == 0, res.stderr[-3000:]
    after = dict(np.load(target))
    for key in ["r", "alpha", "cv_score"]:
        np.testing.assert_array_equal(before[key], after[key])


# -- report -----------------------------------------------------------------------------------
REPORT_ITEMS = {  # every figure and table of the report -> a phrase of its caption
    "scores.tsv": "Score table",
    "scaling_fits.tsv": "Scaling-law fits",
    "config.yaml": "the feature file its fits read",
    "scaling_models.png": "Brain score against model size",
    "scaling_data.png": "Brain score against training-set size",
    "layers.png": "Brain score across depth",
    "asymmetry.png": "Hemispheric asymmetry against model size",
}


@pytest.mark.parametrize("suffix", ["html", "zip"])
def test_report(workflow_run, tmp_path, suffix):
    workdir, config = workflow_run
    out = tmp_path / f"report.{suffix}"
    res = run_snakemake(workdir, "--report", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    if suffix == "zip":
        with zipfile.ZipFile(out) as archive:
            names = archive.namelist()
            html = archive.read(next(n for n in names if n.endswith("report.html"))).decode()
        for item in REPORT_ITEMS:
            assert any(n.endswith(f"/{item}") for n in names), (item, names)
    else:
        html = out.read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    for item, caption in REPORT_ITEMS.items():
        assert item in html and caption in html, item
    # the captions quote the settings the results were computed with
    assert f"{config['aggregate']['n_bootstrap']} bootstrap resamples" in html
    assert f"context of at least {config['features']['context_tokens']} tokens" in html
    assert "phase_randomization test with 1000 surrogates" in html  # voxel significance
    assert "lmbrain scaling study" in html  # the workflow description


# -- bad input -------------------------------------------------------------------------------
@pytest.fixture
def native_copy(workflow_run, tmp_path, tiny_models):
    """A native dataset (copied from the simulated one) and a config that reads it."""
    workdir, config = workflow_run
    data = tmp_path / "data"
    shutil.copytree(workdir / "results" / "tiny" / "dataset", data)
    cfg = copy.deepcopy(config)
    cfg["datasets"] = {"real": {"format": "native", "path": str(data)}}
    cfg["models"] = cfg["models"][:1]
    cfg["banded"] = []
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path, data


def assert_failed_cleanly(res, workdir: Path, *needles: str):
    out = res.stdout + res.stderr
    assert res.returncode != 0
    for needle in needles:
        assert needle in out, out[-4000:]
    results = workdir / "results" / "real"
    left = [p for p in results.rglob("*") if p.is_file() and "logs" not in p.parts]
    assert left == [], left


def test_stimulus_missing_column(native_copy):
    workdir, data = native_copy
    path = data / "stimuli" / "02_fog.tsv"
    text = path.read_text().splitlines()
    path.write_text("\n".join(line.rsplit("\t", 1)[0] for line in text) + "\n")
    res = run_snakemake(workdir, "--cores", "1")
    assert_failed_cleanly(res, workdir, str(path), "missing column(s) offset")


def test_responses_tr_count_mismatch(native_copy):
    workdir, data = native_copy
    path = data / "responses" / "sub-01" / "03_kitchen.npy"
    np.save(path, np.load(path)[:20])
    res = run_snakemake(workdir, "--cores", "1")
    assert_failed_cleanly(res, workdir, str(path), "TR count does not match")


def test_subject_without_voxels_file(native_copy):
    workdir, data = native_copy
    path = data / "voxels" / "sub-02.tsv"
    path.unlink()
    res = run_snakemake(workdir, "--cores", "1")
    assert_failed_cleanly(res, workdir, str(path), "voxels file")


def test_unknown_model_name(native_copy):
    workdir, _ = native_copy
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["models"] = [{"model": "no-such-org/no-such-model-xyz"}]
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = run_snakemake(workdir, "--cores", "1")
    assert_failed_cleanly(res, workdir, "no-such-org/no-such-model-xyz")
