"""The workflow on a real one-node Slurm cluster (localhost), through profiles/slurm.

`tests/slurm/start_slurm.sh` starts slurmctld, slurmd, munged and (for `sacct`) MariaDB +
slurmdbd, installing Debian's packages first when they are missing; it needs root. The tiny
workflow (one subject, one model and its untrained twin, one layer, one training fraction) runs
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

from lmbrain.resources import BASE_FIT_MB
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
    "fit_encoding_model": 2,  # one per (subject, model, layer); here 1 layer, 1 fraction
}
#: aggregates and plots: `localrules` (Snakefile), run by Snakemake itself, never submitted
LOCAL_RULES = {
    "all",
    "brain_maps",  # one per (subject, model): seconds of work, not worth a queue wait
    "record_config",
    "summarize_scores",
    "plot_scaling",
    "plot_brain_map",
    "summarize_rois",
    "plot_rois",
    "baseline_gaps",
    "scaling_extrapolation",
    "best_layer_table",
    "near_ceiling",
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


def foreign_slurm_setup(conf: Path = Path("/etc/slurm/slurm.conf")) -> str | None:
    """Why ``conf``'s folder is not the test's to use (as start_slurm.sh judges), or None.

    The folder belongs to another user, or a slurm.conf (a file, or a link: another running
    test cluster's, since each test makes its own) is already there.
    """
    if conf.parent.exists() and conf.parent.stat().st_uid != os.geteuid():
        return f"{conf.parent} belongs to another user; the test leaves it alone"
    if conf.exists() or conf.is_symlink():
        return f"{conf} exists: another Slurm setup (or test cluster) that the test leaves alone"
    return None


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
    return foreign_slurm_setup()


def reduced_config(models: Path) -> dict:
    """The tiny config cut down: 1 subject, 1 model + its untrained twin, 1 layer, 1 fraction.

    One layer (the last): a second one added two fits to each run of it (Slurm and local)
    without checking anything more (issue 17).
    """
    config = tiny_config(models)
    config["datasets"]["tiny"]["simulate"]["n_subjects"] = 1
    config["datasets"]["tiny"]["simulate"]["audio"] = False  # no speech model here: no recordings
    config["datasets"]["tiny"]["subjects"] = ["sub-01"]
    config["models"] = [m for m in config["models"] if m["name"].startswith("tiny-gpt2")]
    config["banded"] = []  # its bands name a model this config drops
    config["layers"] = [-1]
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
        if res.returncode == 3:  # /etc/slurm taken meanwhile (start_slurm.sh)
            pytest.skip(res.stderr.strip()[-500:])
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


# the plugin's defaults wait 40 s before the first status check and 10 s between checks
FAST_STATUS = [
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "2",
]


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
        *FAST_STATUS,
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
    for rule in LOCAL_RULES:
        assert not (logs / f"rule_{rule}").exists(), rule
        assert f"localrule {rule}:" in runs["log"], rule


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
    assert len(local) == 2 * 1  # 2 models x 1 layer
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
    """Runtime, GPU and memory requests on a dry run (partition and account: see
    test_sbatch_arguments, which reads what is submitted: dry runs show `<TBD>` for resources
    Snakemake evaluates at submission, depending on its version)."""
    workdir = make_workdir(tmp_path, "dry", reduced_config(tiny_models))
    shipped = dry_run_resources(workdir)
    extract, fit = shipped["extract_features"], shipped["fit_encoding_model"]
    assert extract["gpu"] == "1" and extract["runtime"] == "240"
    assert extract["mem_mb"] == str(extraction_request(tiny_models))
    assert fit["runtime"] == "120" and fit["gpu"] == "0"  # cluster.fit_runtime x 1 fraction

    config = reduced_config(tiny_models)
    config["cluster"] = {"fit_gpus": 1}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert dry_run_resources(workdir)["fit_encoding_model"]["gpu"] == "1"
    (workdir / "config.yaml").write_text(yaml.safe_dump(reduced_config(tiny_models)))

    knobs = dry_run_resources(workdir, LMBRAIN_SLURM_GPUS="0")
    assert knobs["extract_features"]["gpu"] == "0"

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


# -- what is submitted: sbatch calls, recorded by stand-ins for the Slurm commands ------------
FAKE_SLURM = {
    # record the call and refuse the job: the run stops after its first submissions
    "sbatch": 'printf \'%s\\n\' "$*" >> "$FAKE_SLURM_LOG"; echo "sbatch: refused" >&2; exit 1',
    "sacctmgr": 'echo "${SLURM_ACCOUNT:-lab7}"',
    "sshare": 'echo "${SLURM_ACCOUNT:-lab7}"',
    "sinfo": "printf 'PARTITION\\nsite-default*\\n'",
    "sacct": "exit 0",
    "squeue": "exit 0",
    "scancel": "exit 0",
}


def sbatch_calls(log: Path) -> list[dict[str, str]]:
    """Each recorded sbatch call as ``{rule, -p, -A, --mem, --cpus-per-task, -t, gpus}``."""
    calls = []
    for line in log.read_text().splitlines() if log.exists() else []:
        head = line.split(" --wrap", 1)[0]
        call = {"rule": rule_of(re.search(r"--comment (\S+)", head).group(1))}
        for flag in ("-p", "-A", "--mem", "-t"):
            found = re.search(rf"(?:^| ){flag} (\S+)", head)
            call[flag] = found.group(1) if found else None
        cpus = re.search(r"--cpus-per-task[= ](\d+)", head)
        call["--cpus-per-task"] = cpus.group(1) if cpus else None
        gpus = re.search(r"--gpus[= ](\S+)|--gres[= ]gpu:(\S+)", head)
        call["gpus"] = (gpus.group(1) or gpus.group(2)) if gpus else None
        calls.append(call)
    return calls


@pytest.mark.slow
@needs_plugin
def test_sbatch_arguments(tiny_models, tmp_path):
    """The partition, account, memory, CPUs and GPUs that reach sbatch, through the shipped
    profile: fits on $SLURM_PARTITION, extraction on cluster.extraction_partition, the account
    from $SLURM_ACCOUNT, the rules' memory estimates (doubled on the retry), at most `cores`
    (4) CPUs, and no job for the local rules."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, body in FAKE_SLURM.items():
        (fake / name).write_text(f"#!/bin/bash\n{body}\n")
        (fake / name).chmod(0o755)
    config = reduced_config(tiny_models)
    config["cluster"] = {"extraction_partition": "gpu-x"}
    workdir = make_workdir(tmp_path, "w", config)
    upstream = subprocess.run(  # dataset, ceiling, features: locally
        snakemake_cmd(workdir, "--cores", "2", "--workflow-profile", "none", "--until")
        + ["extract_features", "noise_ceiling"],
        capture_output=True,
        text=True,
        env=offline_env(),
        timeout=RUN_TIMEOUT_S,
    )
    assert upstream.returncode == 0, upstream.stderr[-3000:]
    log = tmp_path / "sbatch.log"
    env = offline_env(
        PATH=f"{fake}{os.pathsep}{os.environ['PATH']}",
        FAKE_SLURM_LOG=str(log),
        SLURM_PARTITION="cpu-y",
        SLURM_ACCOUNT="lab7",
    )
    # fits first (their inputs exist), then extraction again (forced)
    stages = [["--until", "fit_encoding_model"]]
    stages.append(["--until", "extract_features", "--forcerun", "extract_features"])
    for extra in stages:
        res = subprocess.run(
            snakemake_cmd(workdir, "--workflow-profile", str(PROFILE), *FAST_STATUS, *extra),
            capture_output=True,
            text=True,
            env=env,
            timeout=RUN_TIMEOUT_S,
        )
        assert res.returncode != 0 and "sbatch" in res.stdout + res.stderr
    calls = pd.DataFrame(sbatch_calls(log))
    print(calls.to_string())
    assert set(calls.rule) == {"fit_encoding_model", "extract_features"}
    assert not set(calls.rule) & LOCAL_RULES
    assert (calls["-A"] == "lab7").all()
    fits, extracts = (
        calls[calls.rule == "fit_encoding_model"],
        calls[calls.rule != "fit_encoding_model"],
    )
    assert (fits["-p"] == "cpu-y").all() and (extracts["-p"] == "gpu-x").all()
    assert (fits["-t"] == "120").all() and (extracts["-t"] == "240").all()
    assert (fits["--cpus-per-task"] == "1").all() and (extracts["--cpus-per-task"] == "4").all()
    assert fits.gpus.isna().all() and (extracts.gpus == "1").all()
    first = int(extracts["--mem"].astype(int).min())
    assert first == extraction_request(tiny_models)
    assert set(extracts["--mem"].astype(int)) == {first, 2 * first}  # retry: twice as much
    mems = sorted(set(fits["--mem"].astype(int)))
    assert (
        len(mems) == 2 and mems[1] == 2 * mems[0] and mems[0] > BASE_FIT_MB
    )  # computed, not <TBD>


# -- someone else's /etc/slurm: skip, never touch it ------------------------------------------
def test_foreign_slurm_setup_is_left_alone(tmp_path):
    conf = tmp_path / "etc-slurm" / "slurm.conf"
    assert foreign_slurm_setup(conf) is None  # no folder yet
    conf.parent.mkdir()
    assert foreign_slurm_setup(conf) is None
    conf.symlink_to(tmp_path / "another-test" / "slurm.conf")  # another test cluster's link
    assert "exists" in foreign_slurm_setup(conf)
    conf.unlink()
    if os.geteuid() == 0:
        os.chown(conf.parent, 4321, 4321)
        assert "belongs to another user" in foreign_slurm_setup(conf)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root (chown)")
def test_start_slurm_refuses_a_foreign_etc_slurm(tmp_path):
    """start_slurm.sh exits 3 at once, before installing or starting anything."""
    etc = tmp_path / "etc-slurm"
    etc.mkdir()
    os.chown(etc, 4321, 4321)
    env = dict(
        os.environ,
        SLURM_TEST_DIR=str(tmp_path / "base"),
        SLURM_SYSTEM_CONF=str(etc / "slurm.conf"),
    )
    res = subprocess.run(
        ["bash", str(START_SLURM), "start"], capture_output=True, text=True, env=env, timeout=60
    )
    assert res.returncode == 3, res.stderr
    assert "belongs to" in res.stderr and not (etc / "slurm.conf").exists()
    assert not (tmp_path / "base" / "etc" / "slurm.conf").exists()


def test_start_slurm_counts_every_cpu():
    """The node gets the machine's CPUs (`nproc --all`), not OMP_NUM_THREADS's count."""
    script = START_SLURM.read_text()
    assert re.search(r'NCPU="\$\(nproc --all\)"', script)
    assert not re.search(r"\$\(nproc\)", script)
