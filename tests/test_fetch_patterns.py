"""The files a config needs: each public adapter's `remote_patterns` select exactly the files
it reads. A fixture in the published layout stands for the bucket; the files the patterns
select are copied to an empty folder, where the adapter must open and validate the
configured subjects (so nothing it reads is missing), while other subjects' data, unused
derivatives and audio stay behind (so nothing more is fetched)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import dataset_fixtures as fx  # noqa: E402

from lmbrain.datasets import ADAPTERS, open_dataset  # noqa: E402
from lmbrain.errors import InputError  # noqa: E402
from lmbrain.fetch import RemoteFile, needed_files  # noqa: E402


def listing_of(root: Path) -> dict[str, RemoteFile]:
    """What the bucket would list for a folder (key, size, MD5 ETag)."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = path.relative_to(root).as_posix()
        out[key] = RemoteFile(key, path.stat().st_size, hashlib.md5(path.read_bytes()).hexdigest())
    return out


def fetch_locally(src: Path, dest: Path, fmt: str, options: dict, subjects, audio=False):
    patterns, required = ADAPTERS[fmt].remote_patterns(options, subjects, audio)
    listing = listing_of(src)
    chosen = needed_files(listing, patterns, [p for p in required if "*" not in p])
    for remote in chosen:
        (dest / remote.key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / remote.key, dest / remote.key)
    return {f.key for f in chosen}, set(listing)


def test_lebel_patterns_cover_what_it_reads(tmp_path):
    fx.make_lebel(tmp_path / "src")
    (tmp_path / "src/stimuli").mkdir()
    for story in fx.LEBEL_STORIES:
        (tmp_path / f"src/stimuli/{story}.wav").write_bytes(b"RIFF")
    got, _ = fetch_locally(tmp_path / "src", tmp_path / "dst", "lebel", {}, ["UTS02"])
    ds = open_dataset(tmp_path / "dst", "lebel", {})
    ds.validate(["UTS02"])
    assert ds.subjects == ["UTS02"]
    assert not any("UTS01" in k or k.endswith(".wav") for k in got)
    assert "derivative/pycortex-db/UTS02/transforms/UTS02_auto/mask_thick.nii.gz" in got
    # a speech model needs the stories' audio, and `stories:` narrows every story's file
    opts = {"stories": sorted(fx.LEBEL_STORIES)[:3]}
    got, _ = fetch_locally(tmp_path / "src", tmp_path / "dst2", "lebel", opts, ["UTS01"], True)
    stems = {Path(k).stem for k in got if k.endswith((".wav", ".hf5", ".TextGrid"))}
    assert stems == set(opts["stories"])
    assert {k for k in got if k.endswith(".wav")} == {f"stimuli/{s}.wav" for s in opts["stories"]}


def test_lebel_missing_story_names_the_key(tmp_path):
    fx.make_lebel(tmp_path / "src")
    with pytest.raises(InputError, match="derivative/TextGrids/nosuchstory.TextGrid"):
        fetch_locally(
            tmp_path / "src", tmp_path / "dst", "lebel", {"stories": ["nosuchstory"]}, None
        )


def test_lpp_patterns_cover_what_it_reads(tmp_path):
    fx.make_lpp(tmp_path / "src")
    got, everything = fetch_locally(tmp_path / "src", tmp_path / "dst", "lpp", {}, ["sub-EN057"])
    ds = open_dataset(tmp_path / "dst", "lpp", {})
    ds.validate(["sub-EN057"])
    assert ds.subjects == ["sub-EN057"]
    assert all("derivatives/" not in k or "sub-EN057" in k for k in got)
    assert len(got) < len(everything)


def test_narratives_patterns_cover_what_it_reads(tmp_path):
    fx.make_narratives(tmp_path / "src")
    opts = {"space": "fsaverage6"}
    got, everything = fetch_locally(
        tmp_path / "src", tmp_path / "dst", "narratives", opts, ["sub-001", "sub-004"]
    )
    ds = open_dataset(tmp_path / "dst", "narratives", opts)
    manifest = ds.validate(["sub-001", "sub-004"])
    ref = open_dataset(tmp_path / "src", "narratives", opts).validate(["sub-001", "sub-004"])
    as_dst = json.dumps(ref, sort_keys=True).replace(str(tmp_path / "src"), str(tmp_path / "dst"))
    assert json.dumps(manifest, sort_keys=True) == as_dst.replace('"src"', '"dst"')
    derivs = [k for k in got if k.startswith("derivatives/")]
    assert derivs and all("sub-001" in k or "sub-004" in k for k in derivs)
    assert all("space-fsaverage6" in k for k in derivs)
    assert len(got) < len(everything)


def test_config_source_keys():
    from lmbrain.config import validate_config
    from lmbrain.errors import ConfigError

    def config(**block):
        return {"datasets": {"d": {"path": "x", **block}}, "models": [{"model": "gpt2"}]}

    cfg = validate_config(config(format="lpp", source="openneuro"))
    block = cfg["datasets"]["d"]
    assert block["accession"] == "ds003643" and block["s3_bucket"] == "openneuro.org"
    assert block["s3_endpoint"] == "https://s3.amazonaws.com"
    own = validate_config(config(format="lebel", source="openneuro", accession="ds999999"))
    assert own["datasets"]["d"]["accession"] == "ds999999"
    with pytest.raises(ConfigError, match=r"datasets\.d\.source"):
        validate_config(config(format="native", source="openneuro"))
    with pytest.raises(ConfigError, match=r"datasets\.d\.source"):
        validate_config(config(format="lebel", source="s3"))
