"""End to end: a simulated trial dataset (scene captions) through the workflow, tiny model.

The simulation plants responses in ROI ``visual`` from word vectors of the captions
(:mod:`lmbrain.trial_demo`); a bag-of-words baseline reading those very vectors from a
GloVe-format file must recover them: visual voxels predicted, control voxels not, and the
visual ROI's RDM significantly related to the baseline's.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lmbrain.testing import make_tiny_model
from lmbrain.trial_demo import STOP_WORDS, _word_vector, load_scenes

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SCORE_COLUMNS = (
    "dataset subject model n_params layer depth train_fraction n_train_trs "
    "mean_r mean_r_left mean_r_right mean_r_norm"
).split()
WORD_DIM, SEED = 8, 0


def run(workdir: Path, *args: str):
    cmd = [SNAKEMAKE, *args, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", str(workdir / "config.yaml"), "--replace-workflow-config"]
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        cmd, capture_output=True, text=True, env=dict(os.environ, **env), timeout=900
    )


def planted_glove(path: Path) -> Path:
    """The simulation's word vectors, in GloVe format."""
    captions, _ = load_scenes()
    words = {
        w for caps in captions.values() for c in caps for w in re.findall(r"[a-z]+", c.lower())
    }
    lines = [
        w + " " + " ".join(f"{v:.7g}" for v in _word_vector(w, WORD_DIM, SEED))
        for w in sorted(words - STOP_WORDS)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def trial_config(model: Path, glove: Path) -> dict:
    return {
        "seed": 0,
        "datasets": {
            "scenes": {
                "format": "trials",
                "simulate": {
                    "seed": SEED,
                    "n_subjects": 2,
                    "voxels_per_hemisphere": 12,
                    "n_repeats": 3,
                },
                "trials": {
                    "rsa_permutations": 200,
                    "baselines": [
                        {"name": "planted", "kind": "bow", "glove": str(glove)},
                        {"name": "category", "kind": "category"},
                        # Doerig et al.'s word-order control, embedded by the same model
                        {"name": "scrambled", "kind": "scrambled", "model": str(model)},
                    ],
                },
            }
        },
        "models": [{"name": "tiny-gpt2", "model": str(model), "family": "gpt2"}],
        "layers": [-1],
        "train_fractions": [0.5, 1.0],
        "features": {"batch_size": 32, "threads": 1},
        "fitting": {"alphas": {"logspace": [-1, 4, 6]}, "n_folds": 4},
        "aggregate": {"n_bootstrap": 20},
    }


@pytest.fixture(scope="module")
def trial_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trials")
    model = make_tiny_model(workdir / "gpt2", arch="gpt2", hidden_size=32, n_layers=2, seed=0)
    config = trial_config(model, planted_glove(workdir / "planted.txt"))
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    res = run(workdir, "--cores", "2")
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    return workdir, config


def test_outputs_and_score_table(trial_run):
    workdir, _ = trial_run
    out = workdir / "results" / "scenes"
    scores = pd.read_csv(out / "summary" / "scores.tsv", sep="\t")
    assert set(SCORE_COLUMNS) <= set(scores.columns)
    assert len(scores) == 2 * 1 * 2  # subjects x layers x fractions
    assert scores["mean_r"].notna().all()
    full = scores[scores.train_fraction == 1].set_index(["subject", "layer"])
    half = scores[scores.train_fraction == 0.5].set_index(["subject", "layer"])
    assert (full.n_train_trs == 48 * 3).all()  # 48 training images x 3 repeats
    assert (half.n_train_trs.loc[full.index] == 24 * 3).all()
    assert (full.n_train_stories == 48).all()
    fits = pd.read_csv(out / "summary" / "scaling_fits.tsv", sep="\t")
    assert {"params", "data", "asymmetry"} <= set(fits["fit"])
    for name in ["scaling_models", "scaling_data", "layers", "asymmetry", "rsa"]:
        assert (out / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    base = pd.read_csv(out / "summary" / "baseline_scores.tsv", sep="\t")
    assert sorted(base["model"].unique()) == ["category", "planted", "scrambled"]
    assert base["mean_r"].notna().all()


def test_planted_voxels_recovered(trial_run):
    workdir, _ = trial_run
    out = workdir / "results" / "scenes"
    for subject in ["sub-01", "sub-02"]:
        fit = np.load(out / "fits" / subject / "planted" / "layer-0_frac-1.npz")
        visual = fit["roi"] == "visual"
        assert np.nanmean(fit["r"][visual]) > 0.5
        assert np.nanmean(fit["r"][visual]) > np.nanmean(fit["r"][~visual]) + 0.4
        ceiling = np.load(out / "ceilings" / f"{subject}.npz")
        truth = pd.read_csv(out / "dataset" / "ground_truth" / f"{subject}.tsv", sep="\t")
        np.testing.assert_allclose(ceiling["ncsnr"], truth["ncsnr"], atol=0.45)
        assert ceiling["cc_max"][visual].min() > ceiling["cc_max"][~visual].max() - 0.2


def test_rsa_of_planted_roi_is_significant(trial_run):
    workdir, _ = trial_run
    rsa = pd.read_csv(workdir / "results" / "scenes" / "summary" / "rsa.tsv", sep="\t")
    planted = rsa[rsa.model == "planted"].set_index(["subject", "roi"])
    for subject in ["sub-01", "sub-02"]:
        assert planted.loc[(subject, "visual"), "rho"] > 0.2
        assert planted.loc[(subject, "visual"), "p_value"] < 0.05
        assert planted.loc[(subject, "visual"), "rho"] > planted.loc[(subject, "control"), "rho"]
    assert planted["n_stimuli"].eq(12).all()
    visual = rsa[rsa.roi == "visual"]
    assert (visual.noise_ceiling_upper >= visual.noise_ceiling_lower).all()
    assert set(rsa["model"]) == {"tiny-gpt2", "planted", "category", "scrambled"}
    assert rsa.loc[rsa.model == "scrambled", "rho"].notna().all()


def test_nothing_left_to_do(trial_run):
    workdir, _ = trial_run
    res = run(workdir, "-n")
    assert res.returncode == 0, res.stderr
    assert "Nothing to be done" in res.stdout + res.stderr


def test_bad_trial_count_stops_before_any_job(trial_run, tmp_path):
    workdir, config = trial_run
    data = tmp_path / "data"
    shutil.copytree(workdir / "results" / "scenes" / "dataset", data)
    betas = data / "responses" / "sub-02" / "betas.npy"
    np.save(betas, np.load(betas)[:-5])
    cfg = copy.deepcopy(config)
    cfg["datasets"] = {"real": {"format": "trials", "path": str(data)}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = run(tmp_path, "--cores", "1")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert str(betas) in out and "trials" in out, out[-3000:]
    assert not (tmp_path / "results" / "real").exists()
