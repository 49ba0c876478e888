"""Safe by default, end to end (issue 14): `--cores` bounds the jobs running at once, key order
in the config reruns nothing, a user's `--configfile` replaces the demo's, and a dataset's
own subject list cannot name a path outside results/.

One small real run (a simulated dataset, two tiny models, one subject, the fit of each model's
last layer as targets: 8 jobs) with `--cores 1`, then dry runs against it.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmbrain.testing import job_counts, make_tiny_model

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TARGETS = [
    "results/tiny/fits/sub-01/g/layer-2_frac-1.json",
    "results/tiny/fits/sub-01/l/layer-2_frac-1.json",
]


def snakemake(workdir: Path, *args: str, config: str | None = "config.yaml"):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [SNAKEMAKE, *args, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    if config is not None:
        cmd += ["--configfile", str(workdir / config)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def write_config(path: Path, cfg: dict) -> None:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))  # keys in the order given


def tiny_config(models: Path) -> dict:
    return {
        "datasets": {
            "tiny": {
                "simulate": {
                    "seed": 1,
                    "n_subjects": 1,
                    "voxels_per_hemisphere": 4,
                    "n_repeats": 2,
                    "stories": ["01_farm", "02_fog", "03_kitchen", "04_train", "12_lighthouse"],
                },
                "ceiling": {"method": "auto", "n_splits": 4},
            }
        },
        "models": [
            {"name": "g", "model": str(models / "gpt2"), "layers": [-1], "family": "gpt2"},
            {"name": "l", "model": str(models / "llama"), "layers": [-1], "family": "llama"},
        ],
        "train_fractions": [1.0],
        "features": {"context_tokens": 8, "stride_tokens": 8, "batch_size": 16, "threads": 1},
        "temporal": {"method": "lanczos", "delays": [1, 2]},
        "fitting": {"alphas": {"logspace": [0, 4, 3]}, "n_folds": 2, "solver": "auto"},
        "aggregate": {"n_bootstrap": 10},
    }


def reversed_keys(obj):
    """Every mapping with its keys in reverse order, recursively (values unchanged)."""
    if isinstance(obj, dict):
        return {key: reversed_keys(obj[key]) for key in reversed(list(obj))}
    if isinstance(obj, list):
        return [reversed_keys(item) for item in obj]
    return obj


def max_concurrent_jobs(log: str) -> int:
    """Most jobs running at once, from Snakemake's log of job starts and ends."""
    running, most = set(), 0
    for line in log.splitlines():
        started = re.match(r"\s+jobid: (\d+)$", line)
        finished = re.match(r"Finished jobid: (\d+)", line)
        if started:
            running.add(started[1])
            most = max(most, len(running))
        elif finished:
            running.discard(finished[1])
    return most


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    make_tiny_model(root / "models" / "gpt2", arch="gpt2", hidden_size=32, n_layers=2, seed=0)
    make_tiny_model(root / "models" / "llama", arch="llama", hidden_size=32, n_layers=2, seed=1)
    workdir = root / "run"
    workdir.mkdir()
    config = tiny_config(root / "models")
    write_config(workdir / "config.yaml", config)
    res = snakemake(workdir, "--cores", "1", *TARGETS)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return workdir, config, res.stdout + res.stderr


def test_cores_bound_the_jobs_running_at_once(run):
    """With --cores 1 no two jobs overlap (Snakemake >= 9.10 ran two extractions side by side
    once a job had run alone: lmbrain.snakemake_fixes)."""
    _, _, log = run
    assert job_counts(log) == {
        "simulate_dataset": 1,
        "validate_stimuli": 1,
        "validate_subject": 1,
        "noise_ceiling": 1,
        "extract_features": 2,
        "fit_encoding_model": 2,
    }
    assert max_concurrent_jobs(log) == 1, log


def test_reordered_keys_rerun_nothing(run):
    workdir, config, _ = run
    write_config(workdir / "reordered.yaml", reversed_keys(config))
    assert list(reversed_keys(config)) != list(config)
    res = snakemake(workdir, "-n", *TARGETS, config="reordered.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_counts(res.stdout + res.stderr) == {}, res.stdout


def _change_alphas(cfg):
    cfg["fitting"]["alphas"] = {"logspace": [0, 3, 3]}


def _change_simulation(cfg):
    cfg["datasets"]["tiny"]["simulate"]["n_repeats"] = 3


def _change_model(cfg):
    cfg["models"][0]["context_tokens"] = 4


@pytest.mark.parametrize(
    ("change", "want"),
    [
        (_change_alphas, {"fit_encoding_model": 2}),
        (
            _change_simulation,
            {
                "simulate_dataset": 1,
                "validate_stimuli": 1,
                "validate_subject": 1,
                "noise_ceiling": 1,
                "extract_features": 2,
                "fit_encoding_model": 2,
            },
        ),
        (_change_model, {"extract_features": 1, "fit_encoding_model": 1}),
    ],
    ids=["alphas", "simulation", "model"],
)
def test_a_changed_value_still_reruns(run, change, want):
    """Reordered and one value changed: the jobs of that value rerun, as before."""
    workdir, config, _ = run
    changed = copy.deepcopy(config)
    change(changed)
    write_config(workdir / "changed.yaml", reversed_keys(changed))
    res = snakemake(workdir, "-n", *TARGETS, config="changed.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_counts(res.stdout + res.stderr) == want, res.stdout


# -- a user's --configfile replaces the demo's ---------------------------------------------------

USER_CONFIG = {
    "datasets": {"mine": {"simulate": {"n_subjects": 1, "voxels_per_hemisphere": 4}}},
    "models": [{"name": "rv", "baseline": "random_vectors", "width": 8, "train_fractions": [1.0]}],
    "aggregate": {"n_bootstrap": 10},
}


@pytest.fixture
def demo_folder(tmp_path):
    """A working folder holding the demo's config/config.yaml, as a clone of the repo does."""
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    write_config(tmp_path / "mine.yaml", USER_CONFIG)
    return tmp_path


def test_user_config_stands_on_its_own(demo_folder):
    res = snakemake(demo_folder, "-n", config="mine.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    counts = job_counts(out)
    assert counts["simulate_dataset"] == 1, out  # the user's dataset only
    assert "results/demo" not in out  # nothing of the demo is simulated or fitted
    assert "results/mine" in out


def test_without_configfile_the_demo_runs(demo_folder):
    """No --configfile: config/config.yaml (the demo) applies, and `--config` edits it."""
    res = snakemake(demo_folder, "-n", "--config", "seed=3", config=None)
    if res.returncode != 0 and "package" in res.stderr:
        pytest.skip("the demo's model packages are not installed")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "results/demo" in res.stdout + res.stderr


def test_dataset_subject_list_cannot_escape(tmp_path):
    """A subject named `..` in a native dataset's own dataset.yaml stops the run up front."""
    from lmbrain.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "data", n_subjects=1, voxels_per_hemisphere=2, n_repeats=2)
    meta = yaml.safe_load((data / "dataset.yaml").read_text())
    meta["subjects"] = [".."]
    (data / "dataset.yaml").write_text(yaml.safe_dump(meta))
    cfg = {
        "datasets": {"real": {"format": "native", "path": str(data)}},
        "models": USER_CONFIG["models"],
    }
    write_config(tmp_path / "config.yaml", cfg)
    res = snakemake(tmp_path, "-n")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "datasets.real.subjects" in out and "plain path component" in out, out
    assert not (tmp_path / "results").exists()
