"""Safe by default (issue 14): no model-folder code, names that stay inside results/, alpha
grids checked up front, outputs that honour the umask, no temp files left by killed jobs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

# -- 1. no remote code -------------------------------------------------------------------------

EVIL_CONFIG = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import PretrainedConfig


class EvilConfig(PretrainedConfig):
    model_type = "evil-lm"
"""

LOAD = """
import sys
from lmbrain.errors import InputError
from lmbrain.models import load_model, read_modality, read_n_layers

entry = {{"model": {folder!r}, "untrained": {untrained}}}
for step in (
    lambda: read_modality(entry, {cache!r}),
    lambda: read_n_layers(entry, {cache!r}),
    lambda: load_model(entry, {cache!r}),
):
    try:
        step()
    except InputError as exc:
        print("InputError:", exc)
"""


@pytest.fixture
def evil_model(tiny_model_dir, tmp_path):
    """A tiny model folder whose config asks for its own `configuration_evil.py`, which
    writes a marker file when imported."""
    folder = tmp_path / "evil"
    shutil.copytree(tiny_model_dir, folder)
    marker = tmp_path / "marker.txt"
    (folder / "configuration_evil.py").write_text(EVIL_CONFIG.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "evil-lm"  # no transformers class: only the folder's code loads it
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModel": "configuration_evil.EvilConfig",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


@pytest.mark.parametrize("untrained", [False, True])
def test_model_folder_code_never_runs(evil_model, tmp_path, untrained):
    """Loading through lmbrain never imports a folder's own code, even when stdin says yes
    (transformers asks on stdin when `trust_remote_code` is left unset)."""
    folder, marker = evil_model
    script = LOAD.format(folder=str(folder), untrained=untrained, cache=str(tmp_path / "cache"))
    res = subprocess.run(
        [sys.executable, "-c", script],
        input="y\n" * 20,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"),
    )
    assert not marker.exists(), res.stdout + res.stderr
    assert res.returncode == 0, res.stderr[-3000:]
    assert "custom code" in res.stdout  # the load fails with an InputError that says why


def test_every_auto_loader_refuses_remote_code():
    """Every transformers Auto* call in the package and scripts passes trust_remote_code=False
    (a static check, so a new loader cannot forget it)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    calls = re.compile(r"\bAuto\w+\.from_(?:pretrained|config)\(")
    missing = []
    for folder in ("src", "scripts", "benchmarks"):
        for path in sorted((root / folder).rglob("*.py")):
            text = path.read_text()
            for match in calls.finditer(text):
                # the call's argument list, up to its closing parenthesis
                depth, i = 1, match.end()
                while depth and i < len(text):
                    depth += {"(": 1, ")": -1}.get(text[i], 0)
                    i += 1
                args = text[match.end() : i]
                if "NO_REMOTE_CODE" not in args and "trust_remote_code=False" not in args:
                    line = text[: match.start()].count("\n") + 1
                    missing.append(f"{path.relative_to(root)}:{line}")
    assert not missing, textwrap.fill(" ".join(missing))


# -- 2. names cannot escape results/ -------------------------------------------------------------

BASE = {"datasets": {"d": {"simulate": {}}}, "models": [{"model": "gpt2", "name": "m"}]}


def _config(**changes):
    import copy

    cfg = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = cfg
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return cfg


def _dataset(name):
    return {"datasets": {name: {"simulate": {}}}, "models": BASE["models"]}


@pytest.mark.parametrize("bad", ["..", ".", ".hidden", "-x", "a/b", ""])
@pytest.mark.parametrize(
    ("key", "make"),
    [
        ("datasets", _dataset),
        ("datasets.d.subjects.0", lambda n: _config(datasets__d__subjects=[n])),
        ("models.0.name", lambda n: _config(models__0__name=n)),
        (
            "banded.0.name",
            lambda n: {
                **BASE,
                "models": [{"model": "gpt2", "name": "m"}, {"model": "gpt2", "name": "k"}],
                "banded": [
                    {"name": n, "bands": [{"model": "m", "layer": 1}, {"model": "k", "layer": 1}]}
                ],
            },
        ),
        (
            "banded.0.bands.1.name",
            lambda n: {
                **BASE,
                "banded": [
                    {
                        "name": "b",
                        "bands": [
                            {"model": "m", "layer": 1},
                            {"model": "m", "layer": 2, "name": n},
                        ],
                    }
                ],
            },
        ),
    ],
)
def test_path_names_are_plain_components(key, make, bad):
    """`.`, `..`, hidden or option-like names and separators are refused, naming the key."""
    from lmbrain.config import validate_config
    from lmbrain.errors import ConfigError

    if bad == "" and key == "datasets":
        pytest.skip("an empty YAML key is not a dataset name")
    with pytest.raises(ConfigError) as info:
        validate_config(make(bad))
    assert info.value.key == key
    assert "plain path component" in str(info.value) or bad == ""


def test_plain_names_still_pass():
    from lmbrain.config import validate_config

    cfg = _config(datasets__d__subjects=["sub-01", "UTS01", "a.b_c"], models__0__name="x.y-1_2")
    assert validate_config(cfg)["datasets"]["d"]["subjects"] == ["sub-01", "UTS01", "a.b_c"]


def test_check_name():
    from lmbrain.config import check_name
    from lmbrain.errors import ConfigError

    assert check_name("k", "sub-01") == "sub-01"
    for bad in ("..", ".", "../x", "x/..", ".x", "-x", "", None, "a b", "a+b"):
        with pytest.raises(ConfigError, match="'k'"):
            check_name("k", bad)


# -- 3. alpha grids are checked when the workflow starts -----------------------------------------


@pytest.mark.parametrize(
    "alphas",
    [
        {"logspace": [0, 4, 0]},  # empty
        {"logspace": [0, 4, 2.5]},  # no whole count
        {"logspace": [0, 400, 3]},  # 10^400 overflows to inf
        {"logspace": [-400, 0, 3]},  # 10^-400 underflows to 0
        [1.0, 1e400],  # inf in a list
    ],
)
def test_bad_alpha_grids_fail_validation(alphas):
    from lmbrain.config import validate_config
    from lmbrain.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        validate_config(_config(fitting={"alphas": alphas}))
    assert info.value.key.startswith("fitting.alphas")


def test_good_alpha_grids_pass():
    from lmbrain.config import validate_config

    for alphas in ({"logspace": [0, 6, 13]}, {"logspace": [-2, 300, 4]}, [0.1, 10.0]):
        validate_config(_config(fitting={"alphas": alphas}))


# -- 5. outputs honour the umask -----------------------------------------------------------------


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_atomic_outputs_honour_the_umask(tmp_path, umask):
    """Files written through lmbrain.io get 0o666 & ~umask (mkstemp alone gives 600)."""
    import numpy as np

    from lmbrain.io import atomic_path, save_json, save_npz, save_yaml

    save_npz(tmp_path / "a.npz", x=np.zeros(2))
    save_json(tmp_path / "a.json", {"x": 1})
    save_yaml(tmp_path / "a.yaml", {"x": 1})
    with atomic_path(tmp_path / "sub" / "b.tsv") as tmp:
        tmp.write_text("x\n")
    for name in ("a.npz", "a.json", "a.yaml", "sub/b.tsv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert (tmp_path / "sub").stat().st_mode & 0o777 == 0o777 & ~umask


def test_simulated_dataset_folder_honours_the_umask(tmp_path, umask):
    """The demo dataset folder is staged in a temporary folder (mkdtemp: 700) and renamed."""
    from lmbrain.demo import make_demo_dataset

    out = tmp_path / "results" / "demo" / "dataset"
    make_demo_dataset(out, n_subjects=1, voxels_per_hemisphere=2, n_repeats=2)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    for path in [out, *out.rglob("*")]:
        want = 0o777 if path.is_dir() else 0o666
        assert path.stat().st_mode & 0o777 == want & ~umask, path
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


# -- 6. temporary files of killed jobs are removed by the next run -------------------------------

KILLED_WRITER = """
import os, sys, time
from lmbrain.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"x" * 1000)
    print(tmp, flush=True)
    os.kill(os.getpid(), 9)  # killed mid-write: no clean-up runs
"""


def _temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_next_write_removes_a_killed_writers_temp_file(tmp_path):
    target = tmp_path / "features.h5"
    res = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True, text=True
    )
    assert res.returncode == -9
    assert len(_temporaries(tmp_path)) == 1  # the killed job's leftover
    from lmbrain.io import save_npz

    save_npz(tmp_path / "other.npz")  # another target leaves it alone
    assert len(_temporaries(tmp_path)) == 1
    from lmbrain.io import atomic_path

    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert _temporaries(tmp_path) == [tmp.name]  # the stale one went before writing
    assert target.read_text() == "new" and _temporaries(tmp_path) == []


def test_a_live_writers_temp_file_is_kept(tmp_path):
    """A temporary file of a process still running on this host is not touched, and one of
    another host only once it is old (lmbrain.io.STALE_AFTER_S)."""
    from lmbrain import io

    target = tmp_path / "x.npz"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".x.npz.{sleeper.pid}@{io._HOST}.abcd1234.tmp.npz"
        live.write_text("partial")
        other_new = tmp_path / ".x.npz.12345@elsewhere-node.abcd1234.tmp.npz"
        other_old = tmp_path / ".x.npz.12345@elsewhere-node.efgh5678.tmp.npz"
        old_style = tmp_path / ".x.npz.k3j_x9a2.tmp.npz"  # written before names held a pid
        for path in (other_new, other_old, old_style):
            path.write_text("partial")
        past = time.time() - io.STALE_AFTER_S - 10
        os.utime(other_old, (past, past))
        os.utime(old_style, (past, past))
        unrelated = tmp_path / ".x.npz.notes"
        unrelated.write_text("mine")
        io.save_npz(target)
        assert live.exists() and other_new.exists() and unrelated.exists()
        assert not other_old.exists() and not old_style.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    io.save_npz(target)  # the writer is gone now
    assert not live.exists()


def test_killed_staging_folder_is_removed(tmp_path):
    """A simulated dataset staged by a killed job leaves a folder that the next run removes."""
    from lmbrain import io
    from lmbrain.demo import make_demo_dataset

    out = tmp_path / "dataset"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".dataset.{dead.pid}@{io._HOST}.q1w2e3r4.tmp"
    (stale / "responses").mkdir(parents=True)
    make_demo_dataset(out, n_subjects=1, voxels_per_hemisphere=2, n_repeats=2)
    assert _temporaries(tmp_path) == []


# -- 4. canonical params ---------------------------------------------------------------------------


def test_canonical_sorts_every_mapping_and_keeps_lists():
    from lmbrain.config import canonical

    a = {"b": {"y": 1, "x": [{"q": 1, "p": (2, 3)}]}, "a": None}
    b = {"a": None, "b": {"x": [{"p": [2, 3], "q": 1}], "y": 1}}
    assert repr(canonical(a)) == repr(canonical(b))  # what Snakemake compares
    assert list(canonical(a)) == ["a", "b"] and canonical(a)["b"]["x"][0]["p"] == [2, 3]
    assert canonical({"m": [3, 1, 2]}) == {"m": [3, 1, 2]}  # list order can matter
    assert repr(canonical({"a": 1})) != repr(canonical({"a": 2}))


# -- 8. --cores is a bound -------------------------------------------------------------------------


def test_bound_cores_charges_a_lone_job_once():
    """A selection that did not subtract the jobs' cores is charged; one that did is not."""
    import threading
    from types import SimpleNamespace

    from snakemake.scheduling.job_scheduler import JobScheduler

    from lmbrain.snakemake_fixes import bound_cores, charge_selected

    assert bound_cores() and bound_cores()  # patched once, idempotent
    assert JobScheduler.job_selector._lmbrain_bound_cores
    job = SimpleNamespace(scheduler_resources={"_cores": 1, "_nodes": 1, "_job_count": 1})
    for already_charged in (False, True):
        sched = SimpleNamespace(
            resources={"_cores": 2, "_nodes": 9, "_job_count": 5},
            global_resources={"_cores": 2, "_nodes": 9, "_job_count": 5},
            _lock=threading.Lock(),
        )
        sched.update_available_resources = lambda jobs, s=sched: (
            JobScheduler.update_available_resources(s, jobs)
        )
        before = dict(sched.resources)
        if already_charged:
            sched.update_available_resources([job])
        assert charge_selected(sched, before, [job]) is not already_charged
        assert sched.resources == {"_cores": 1, "_nodes": 8, "_job_count": 5}
    assert not charge_selected(sched, dict(sched.resources), [])
