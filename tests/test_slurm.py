"""The workflow on a real one-node Slurm cluster (localhost), through profiles/slurm.

`tests/slurm/start_slurm.sh` starts slurmctld, slurmd, munged and (for `sacct`) MariaDB +
slurmdbd, installing Debian's packages first when they are missing; it needs root. The tiny
workflow (one subject, one model and its untrained twin, two layers, one training fraction) runs
with `--workflow-profile profiles/slurm` and, at the same time, locally with `--cores 2`; the
jobs must have gone through Slurm and the score tables must agree.

The profile is used as shipped, with its environment knobs: the test partition and account come
from `SLURM_PARTITION` / `SLURM_ACCOUNT`, and `LMBRAIN_SLURM_GPUS=0` drops the GPU request (the
test cluster has no GPU). A `--set-resources` on the command line would replace the profile's
whole `set-resources:` key instead; `test_profile_resources` checks both behaviours on a dry run.
"""

from __future__ import annotations

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
from test_workflow import tiny_config

from lmbrain.testing import make_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
START_SLURM = ROOT / "tests" / "slurm" / "start_slurm.sh"
PROFILE = ROOT / "profiles" / "slurm"
PARTITION = "lmbrain-test"
SLURM_TOOLS = ["slurmctld", "slurmd", "sbatch", "sacct", "munged"]
# Slurm jobs of the reduced config: rule -> count (`all` is a local rule)
EXPECTED_JOBS = {
    "simulate_dataset": 1,
    "validate_stimuli": 1,
    "validate_subject": 1,
    "noise_ceiling": 1,
    "extract_features": 2,
    "fit_encoding_model": 4,  # one per (subject, model, layer); here 1 fraction
    "summarize_scores": 1,
    "plot_scaling": 1,
    "brain_maps": 2,  # rules/maps.smk: one per (subject, model)
    "plot_brain_map": 1,
    "summarize_rois": 1,
    "plot_rois": 1,
    "baseline_gaps": 1,  # rules/extras.smk
    "scaling_extrapolation": 1,
}
RUN_TIMEOUT_S = 900

pytestmark = pytest.mark.slurm


def plugin_missing() -> bool:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return True
    return False


needs_plugin = pytest.mark.skipif(
    plugin_missing(), reason="needs snakemake-executor-plugin-slurm (pip install it)"
)


def cannot_start_slurm() -> str | None:
    """Why this machine cannot host the test cluster, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to start the Slurm daemons (SlurmUser=root); not running as root"
    installed = all(shutil.which(tool) for tool in SLURM_TOOLS)
    if not installed and shutil.which("apt-get") is None:
        return (
            f"Slurm is not installed ({', '.join(SLURM_TOOLS)}) and apt-get is not "
            "available to install it"
        )
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and not conf.is_symlink():
        return f"{conf} exists: this machine has its own Slurm setup, which the test leaves alone"
    return None


def reduced_config(models: Path) -> dict:
    """The tiny config cut down: 1 subject, 1 model + its untrained twin, 2 layers, 1 fraction."""
    config = tiny_config(models)
    config["datasets"]["tiny"]["simulate"]["n_subjects"] = 1
    config["datasets"]["tiny"]["subjects"] = ["sub-01"]
    config["models"] = [m for m in config["models"] if m["name"].startswith("tiny-gpt2")]
    config["banded"] = []  # its bands name a model this config drops
    config["layers"] = [0, -1]
    config["train_fractions"] = [1.0]
    return config


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [
        SNAKEMAKE,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]


def offline_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LMBRAIN_"))}
    return dict(env, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)


def start_cluster(base: Path, accounting: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        SLURM_TEST_DIR=str(base),
        SLURM_PARTITION=PARTITION,
        SLURM_ACCOUNTING=accounting,
    )
    return subprocess.run(
        ["bash", str(START_SLURM), "start"], capture_output=True, text=True, env=env, timeout=600
    )


def stop_cluster(base: Path) -> None:
    env = dict(os.environ, SLURM_TEST_DIR=str(base))
    subprocess.run(["bash", str(START_SLURM), "stop"], env=env, timeout=120, check=False)


@pytest.fixture(scope="module")
def cluster():
    """A running test cluster: ``{"conf": slurm.conf, "sacct_error": None or why not}``.

    Starts with accounting (MariaDB + slurmdbd); if that part cannot run here, starts again
    without it and keeps the error for the `sacct` test. Always stopped at teardown.
    """
    reason = cannot_start_slurm()
    if reason:
        pytest.skip(reason)
    base = Path(f"/tmp/lmbrain-slurm-test-{os.getpid()}")
    sacct_error = None
    try:
        res = start_cluster(base, "slurmdbd")
        if res.returncode != 0:
            sacct_error = f"slurmdbd accounting did not start: {res.stderr.strip()[-1500:]}"
            res = start_cluster(base, "none")
        if res.returncode != 0:
            pytest.skip(f"the Slurm test cluster did not start: {res.stderr.strip()[-2000:]}")
        yield {"conf": base / "etc" / "slurm.conf", "sacct_error": sacct_error}
    finally:
        stop_cluster(base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    make_tiny_model(models / "gpt2", arch="gpt2", hidden_size=32, n_layers=2, seed=0)
    return models


def make_workdir(root: Path, name: str, config: dict) -> Path:
    workdir = root / name
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


@pytest.fixture(scope="module")
def runs(cluster, tiny_models, tmp_path_factory):
    """The same config run locally and on Slurm, at the same time (Slurm mostly waits)."""
    root = tmp_path_factory.mktemp("slurm_runs")
    config = reduced_config(tiny_models)
    local_dir = make_workdir(root, "local", config)
    slurm_dir = make_workdir(root, "slurm", config)
    local = subprocess.Popen(
        snakemake_cmd(local_dir, "--cores", "2", "--workflow-profile", "none"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=offline_env(),
    )
    slurm_env = offline_env(
        SLURM_CONF=str(cluster["conf"]),
        SLURM_PARTITION=PARTITION,
        LMBRAIN_SLURM_GPUS="0",
        **({} if cluster["sacct_error"] else {"SLURM_ACCOUNT": "root"}),
    )
    slurm_args = [
        "--workflow-profile",
        str(PROFILE),
        "--jobs",
        "4",
        "--cores",
        "2",  # the test node has 2 CPUs: extraction's min(cores, 8) threads must fit
        "--slurm-keep-successful-logs",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "2",
    ]
    try:
        slurm = subprocess.run(
            snakemake_cmd(slurm_dir, *slurm_args),
            capture_output=True,
            text=True,
            env=slurm_env,
            timeout=RUN_TIMEOUT_S,
        )
        local_out, _ = local.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if local.poll() is None:
            local.kill()
            local.wait()
    slurm_out = slurm.stdout + slurm.stderr
    assert local.returncode == 0, local_out[-5000:]
    assert slurm.returncode == 0, slurm_out[-8000:]
    match = re.search(r"SLURM run ID: (\S+)", slurm_out)
    assert match, slurm_out[-3000:]
    return {
        "local": local_dir,
        "slurm": slurm_dir,
        "log": slurm_out,
        "run_id": match.group(1),
        "tiny_models": tiny_models,
    }


def rule_of(comment: str) -> str:
    """Rule name in the job comment the plugin sets: ``rule_<rule>_wildcards_<values>``."""
    for rule in EXPECTED_JOBS:
        if comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_"):
            return rule
    return comment


def extraction_request(models: Path, attempt: int = 1) -> int:
    """Memory (MB) an extraction job of the tiny GPT-2 asks for (lmbrain.resources)."""
    from lmbrain.resources import extraction_mem_mb

    return extraction_mem_mb({"model": str(models / "gpt2")}, "resources", attempt)


@pytest.mark.slow
@needs_plugin
def test_slurm_logs_per_job(runs):
    logs = runs["slurm"] / ".snakemake" / "slurm_logs"
    counts = {rule: len(list((logs / f"rule_{rule}").rglob("*.log"))) for rule in EXPECTED_JOBS}
    assert counts == EXPECTED_JOBS, runs["log"][-3000:]
    assert "localrule all" in runs["log"]


@pytest.mark.slow
@needs_plugin
def test_sacct_lists_completed_jobs(runs, cluster):
    if cluster["sacct_error"]:
        pytest.skip(cluster["sacct_error"])
    fields = "JobID,JobName%60,State,Partition,Account,ReqMem,AllocCPUS,Comment%120"
    res = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", "2000-01-01", "--name", runs["run_id"], "-o", fields],
        capture_output=True,
        text=True,
        env=dict(os.environ, SLURM_CONF=str(cluster["conf"])),
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    rows = [line.split("|") for line in res.stdout.strip().splitlines()]
    jobs = pd.DataFrame(rows, columns=re.sub(r"%\d+", "", fields).split(","))
    print(jobs.to_string())
    assert (jobs.State == "COMPLETED").all(), jobs.to_string()
    assert (jobs.Partition == PARTITION).all() and (jobs.Account == "root").all()
    jobs["rule"] = jobs.Comment.map(rule_of)
    assert jobs.rule.value_counts().to_dict() == EXPECTED_JOBS, jobs.to_string()
    # the rule's memory estimate reached sbatch (its attempt-1 value)
    extract = jobs[jobs.rule == "extract_features"]
    assert (extract.ReqMem == f"{extraction_request(runs['tiny_models'])}M").all()
    assert (extract.AllocCPUS == "2").all()  # min(--cores 2, 8) threads


@pytest.mark.slow
@needs_plugin
def test_scores_match_local_run(runs):
    keys = ["subject", "model", "layer", "train_fraction"]
    tables = [
        pd.read_csv(runs[name] / "results" / "tiny" / "summary" / "scores.tsv", sep="\t")
        .sort_values(keys)
        .reset_index(drop=True)
        for name in ["local", "slurm"]
    ]
    local, slurm = tables
    assert len(local) == 2 * 2  # 2 models x 2 layers
    assert list(local.columns) == list(slurm.columns)
    for column in local.columns:
        if pd.api.types.is_numeric_dtype(local[column]):
            np.testing.assert_allclose(
                slurm[column].to_numpy(float),
                local[column].to_numpy(float),
                rtol=1e-5,
                atol=1e-7,
                err_msg=column,
            )
        else:
            assert slurm[column].tolist() == local[column].tolist(), column


# -- the profile itself, on a dry run (no cluster needed) --------------------------------------
def dry_run_resources(workdir: Path, *args: str, **env: str) -> dict[str, str]:
    """``resources:`` line of the first extract_features and fit job in `snakemake -n`."""
    res = subprocess.run(
        snakemake_cmd(workdir, "-n", "--workflow-profile", str(PROFILE), *args),
        capture_output=True,
        text=True,
        env=offline_env(**env),
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    found = {}
    for block in out.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        line = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule in ("extract_features", "fit_encoding_model") and rule not in found and line:
            found[rule] = dict(item.split("=", 1) for item in line.group(1).split(", "))
    return found


@needs_plugin
def test_profile_resources(tiny_models, tmp_path):
    workdir = make_workdir(tmp_path, "dry", reduced_config(tiny_models))
    shipped = dry_run_resources(workdir)
    extract, fit = shipped["extract_features"], shipped["fit_encoding_model"]
    assert extract["gpu"] == "1" and extract["runtime"] == "240"
    assert extract["mem_mb"] == str(extraction_request(tiny_models))
    assert "slurm_partition" not in extract and "slurm_account" not in extract
    assert fit["runtime"] == "120" and fit["gpu"] == "0"  # cluster.fit_runtime x 1 fraction
    assert fit["mem_mb"] == "<TBD>"  # computed from the inputs once they exist

    # GPUs and partitions from the workflow config; $SLURM_PARTITION for the other stage
    config = reduced_config(tiny_models)
    config["cluster"] = {"fit_gpus": 1, "extraction_partition": "gpu-x"}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    configured = dry_run_resources(workdir, SLURM_PARTITION="cpu-y")
    assert configured["extract_features"]["slurm_partition"] == "gpu-x"
    assert configured["fit_encoding_model"]["slurm_partition"] == "cpu-y"
    assert configured["fit_encoding_model"]["gpu"] == "1"
    (workdir / "config.yaml").write_text(yaml.safe_dump(reduced_config(tiny_models)))

    knobs = dry_run_resources(
        workdir, SLURM_PARTITION="gpu-a", SLURM_ACCOUNT="lab7", LMBRAIN_SLURM_GPUS="0"
    )
    extract = knobs["extract_features"]
    assert extract["gpu"] == "0" and extract["mem_mb"] == shipped["extract_features"]["mem_mb"]
    assert extract["slurm_partition"] == "gpu-a" and extract["slurm_account"] == "lab7"

    # a command-line --set-resources replaces the profile's whole set-resources key; the fit
    # rules' runtime is their own (cluster.fit_runtime), not the profile's, so it stays
    cli = dry_run_resources(workdir, "--set-resources", "extract_features:gpu=0")
    assert cli["extract_features"]["gpu"] == "0"
    assert cli["extract_features"]["runtime"] != "240"
    assert cli["fit_encoding_model"]["runtime"] == "120"

    # a fit job fits every fraction of its model: cluster.fit_runtime minutes per fraction
    config = reduced_config(tiny_models)
    config["train_fractions"] = [0.5, 1.0]
    config["cluster"] = {"fit_runtime": 30}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert dry_run_resources(workdir)["fit_encoding_model"]["runtime"] == "60"
