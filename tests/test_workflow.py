"""End to end: the workflow on a tiny config (tiny models built from a config, few voxels).

One workflow run (module-scoped) is checked for its outputs, its reproducibility and for
incremental reruns; bad inputs are checked to stop the run with an error that names the file,
leaving no output behind.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lmbrain.testing import make_tiny_model

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


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of `snakemake -n`."""
    counts, in_table = {}, False
    for line in dry_run_output.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
            elif parts and not set(parts[0]) <= {"-"}:
                break
    return counts


def tiny_config(models: Path) -> dict:
    return {
        "seed": 0,
        "datasets": {
            "tiny": {
                "simulate": {
                    "seed": 1,
                    "n_subjects": 2,
                    "voxels_per_hemisphere": 8,
                    "n_repeats": 4,
                    "stories": STORIES,
                }
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
        ],
        "layers": "all",
        "train_fractions": [0.5, 1.0],
        "features": {"context_tokens": 16, "stride_tokens": 16, "batch_size": 16},
        "fitting": {"alphas": {"logspace": [0, 4, 5]}, "n_folds": 3},
        "aggregate": {"n_bootstrap": 50},
    }


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    make_tiny_model(models / "gpt2", arch="gpt2", hidden_size=32, n_layers=2, seed=0)
    make_tiny_model(models / "llama", arch="llama", hidden_size=48, n_layers=2, seed=1)
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
    # 2 subjects x 3 models x 3 hidden states (2 blocks + embeddings) x 2 fractions
    assert len(scores) == 2 * 3 * 3 * 2
    np.testing.assert_allclose(scores["depth"], scores["layer"] / scores["n_layers"])
    full = scores[scores.train_fraction == 1.0].set_index(["subject", "model", "layer"])
    half = scores[scores.train_fraction == 0.5].set_index(["subject", "model", "layer"])
    assert (full.n_train_trs > half.n_train_trs.loc[full.index]).all()
    assert scores["mean_r"].notna().all()
    fits = pd.read_csv(out / "summary" / "scaling_fits.tsv", sep="\t")
    assert {"params", "data", "asymmetry"} <= set(fits["fit"])
    assert {"slope", "intercept", "slope_ci_low", "slope_ci_high"} <= set(fits.columns)
    for name in ["scaling_models", "scaling_data", "layers", "asymmetry"]:
        png = (out / "plots" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    voxels = np.load(out / "fits" / "sub-01" / "tiny-gpt2" / "layer-2_frac-1.npz")
    for key in ["r", "r2", "alpha", "cc_max", "r_norm", "hemisphere"]:
        assert voxels[key].shape == (16,)
    row = scores.set_index(["subject", "model", "layer", "train_fraction"]).loc[
        ("sub-01", "tiny-gpt2", 2, 1.0)
    ]
    assert row.mean_r == pytest.approx(np.nanmean(voxels["r"]), abs=1e-5)
    left = voxels["hemisphere"] == "L"
    assert row.mean_r_left == pytest.approx(np.nanmean(voxels["r"][left]), abs=1e-5)


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
        "fit_encoding_model": 2 * 3 * 2,
        "summarize_scores": 1,
        "baseline_gaps": 1,
        "scaling_extrapolation": 1,
        "plot_scaling": 1,
    }, res.stdout


def test_rerun_reproduces_numbers(workflow_run):
    workdir, _ = workflow_run
    rel = "results/tiny/fits/sub-02/tiny-llama/layer-1_frac-0.5.npz"  # relative to --directory
    target = workdir / rel
    before = dict(np.load(target))
    res = run_snakemake(workdir, rel, "--cores", "1", "--forcerun", rel)
    assert res.returncode == 0, res.stderr[-3000:]
    after = dict(np.load(target))
    for key in ["r", "alpha", "cv_score"]:
        np.testing.assert_array_equal(before[key], after[key])


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
