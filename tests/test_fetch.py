"""lmbrain.fetch against a real S3 server on 127.0.0.1 (moto's server, tests/s3_server.py).

Nothing here reaches beyond loopback: the server binds 127.0.0.1 and every client is given
its endpoint.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lmbrain.errors import InputError
from lmbrain.fetch import (
    RemoteFile,
    S3Source,
    etag_matches,
    fetch,
    list_for,
    literal_prefix,
    needed_files,
)

pytest.importorskip("moto")
pytest.importorskip("boto3")

SERVER = Path(__file__).with_name("s3_server.py")
ACCESSION = "ds900001"
BIG = "derivative/preprocessed_data/UTS01/big.hf5"


def _write_bucket(root: Path) -> Path:
    """A bucket folder: <root>/<accession>/... with a few small files and one multipart one."""
    ds = root / ACCESSION
    files = {
        "derivative/respdict.json": b'{"a": 10, "b": 12}',
        "derivative/TextGrids/a.TextGrid": b"grid a",
        "derivative/TextGrids/b.TextGrid": b"grid b",
        "derivative/preprocessed_data/UTS01/a.hf5": b"uts01 a" * 100,
        "derivative/preprocessed_data/UTS02/a.hf5": b"uts02 a" * 100,
        "derivative/pycortex-db/UTS01/surfaces/x.gii": b"surface",
        "stimuli/a.wav": b"RIFF....",
    }
    for key, data in files.items():
        (ds / key).parent.mkdir(parents=True, exist_ok=True)
        (ds / key).write_bytes(data)
    rng = np.random.default_rng(0)
    (ds / BIG).write_bytes(rng.bytes(11 * 2**20 + 123))  # 3 parts of 5 MiB: a multipart ETag
    return ds


class Server:
    def __init__(self, bucket_root: Path, tmp: Path, **flags):
        self.log = tmp / "requests.log"
        ready = tmp / "port"
        ready.unlink(missing_ok=True)
        cmd = [sys.executable, str(SERVER), "--root", str(bucket_root), "--ready", str(ready)]
        cmd += ["--log", str(self.log)]
        for flag, value in flags.items():
            cmd += [f"--{flag.replace('_', '-')}", str(value)]
        self.proc = subprocess.Popen(cmd)
        deadline = time.time() + 60
        while not ready.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                self.proc.kill()
                raise RuntimeError("the S3 test server did not start")
            time.sleep(0.1)
        self.endpoint = f"http://127.0.0.1:{ready.read_text()}"

    def requests(self, method: str = "GET") -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line for line in lines if line.startswith(method + " ")]

    def object_gets(self) -> list[str]:
        """The object keys fetched (GETs of an object, not bucket listings)."""
        out = []
        for line in self.requests("GET"):
            _, path, *_ = line.split(" ")
            prefix = f"/openneuro.org/{ACCESSION}/"
            if path.startswith(prefix) and len(path) > len(prefix):
                out.append(path[len(prefix) :])
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def bucket(tmp_path):
    return _write_bucket(tmp_path / "bucket")


@pytest.fixture
def server(bucket, tmp_path):
    srv = Server(bucket.parent, tmp_path)
    yield srv
    srv.stop()


def _source(server) -> S3Source:
    return S3Source(ACCESSION, endpoint_url=server.endpoint)


def test_patterns_choose_only_matching_files():
    listing = {
        k: RemoteFile(k, 1, "0" * 32)
        for k in ["d/a.tsv", "d/sub/a.tsv", "d/b.txt", "e/UTS01/x.hf5", "e/UTS02/x.hf5"]
    }
    chosen = needed_files(listing, ["d/*.tsv", "e/UTS01/*.hf5"])
    assert [f.key for f in chosen] == ["d/a.tsv", "e/UTS01/x.hf5"]  # * does not cross /
    with pytest.raises(InputError, match="e/UTS03/x.hf5"):
        needed_files(listing, ["e/*/x.hf5"], required=["e/UTS03/x.hf5"])
    assert literal_prefix("derivative/TextGrids/*.TextGrid") == "derivative/TextGrids/"
    assert literal_prefix("derivative/respdict.json") == "derivative/"


def test_etag_check_single_and_multipart(tmp_path, server, bucket):
    """The ETags the S3 server computed (independently) are recognised, and a changed byte is not."""
    listing = _source(server).list()
    big = listing[BIG]
    assert big.etag.endswith("-3")  # multipart upload
    assert etag_matches(bucket / BIG, big.etag)
    small = listing["derivative/respdict.json"]
    assert small.etag == hashlib.md5((bucket / small.key).read_bytes()).hexdigest()
    assert etag_matches(bucket / small.key, small.etag)
    changed = tmp_path / "changed"
    data = bytearray((bucket / BIG).read_bytes())
    data[-1] ^= 1
    changed.write_bytes(bytes(data))
    assert not etag_matches(changed, big.etag)


def test_fetch_only_needed_then_nothing(tmp_path, server, bucket):
    source = _source(server)
    patterns = [
        "derivative/respdict.json",
        "derivative/TextGrids/*.TextGrid",
        "derivative/preprocessed_data/UTS01/*.hf5",
    ]
    files = needed_files(list_for(source, patterns), patterns)
    dest = tmp_path / "data"
    result = fetch(source, files, dest, show_progress=False)
    expected = sorted(
        [
            "derivative/respdict.json",
            "derivative/TextGrids/a.TextGrid",
            "derivative/TextGrids/b.TextGrid",
            "derivative/preprocessed_data/UTS01/a.hf5",
            BIG,
        ]
    )
    assert sorted(result["fetched"]) == expected
    assert sorted(server.object_gets()) == expected  # the server saw exactly these objects
    for key in expected:
        assert (dest / key).read_bytes() == (bucket / key).read_bytes()
    assert not (dest / "derivative/preprocessed_data/UTS02").exists()
    assert not list(dest.rglob("*.part"))

    n_before = len(server.object_gets())
    again = fetch(source, files, dest, show_progress=False)
    assert again["fetched"] == [] and sorted(again["present"]) == expected
    assert len(server.object_gets()) == n_before  # a second run fetches nothing


def test_hand_downloaded_file_is_kept_when_it_matches(tmp_path, server, bucket):
    source = _source(server)
    files = needed_files(source.list("derivative/"), ["derivative/respdict.json"])
    dest = tmp_path / "data"
    (dest / "derivative").mkdir(parents=True)
    (dest / "derivative/respdict.json").write_bytes(
        (bucket / "derivative/respdict.json").read_bytes()
    )
    assert fetch(source, files, dest, show_progress=False)["fetched"] == []
    assert server.object_gets() == []


def test_dropped_connection_leaves_no_final_file_and_resumes(tmp_path, bucket):
    (tmp_path / "a").mkdir()
    dying = Server(bucket.parent, tmp_path / "a", die_after=f"{BIG}:{3 * 2**20}")
    source = _source(dying)
    remote = source.list("derivative/preprocessed_data/")[BIG]
    dest = tmp_path / "data"
    try:
        with pytest.raises(InputError, match="interrupted"):
            fetch(source, [remote], dest, show_progress=False)
    finally:
        dying.stop()
    assert not (dest / BIG).exists()  # nothing under the final name
    part = dest / (BIG + ".part")
    assert 0 < part.stat().st_size < remote.size

    (tmp_path / "b").mkdir()
    healthy = Server(bucket.parent, tmp_path / "b")
    try:
        fetch(_source(healthy), [remote], dest, show_progress=False)
        ranges = [line.split(" ")[2] for line in healthy.requests("GET") if BIG in line]
    finally:
        healthy.stop()
    assert (dest / BIG).read_bytes() == (bucket / BIG).read_bytes()
    assert not part.exists()
    assert ranges and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"  # resumed


def test_corrupted_object_is_detected(tmp_path, bucket):
    key = "derivative/preprocessed_data/UTS01/a.hf5"
    srv = Server(bucket.parent, tmp_path, corrupt=key)
    try:
        source = _source(srv)
        remote = source.list("derivative/preprocessed_data/UTS01/")[key]
        with pytest.raises(InputError, match=f"{key}.*checksum"):
            fetch(source, [remote], tmp_path / "data", show_progress=False)
        assert srv.object_gets().count(key) == 2  # fetched again once, then the error
    finally:
        srv.stop()
    assert not (tmp_path / "data" / key).exists()
    assert not (tmp_path / "data" / (key + ".part")).exists()


def test_missing_key_is_named(tmp_path, server):
    source = _source(server)
    ghost = RemoteFile("derivative/preprocessed_data/UTS09/a.hf5", 10, "0" * 32)
    with pytest.raises(InputError, match="UTS09/a.hf5.*no such file"):
        fetch(source, [ghost], tmp_path / "data", show_progress=False)
    with pytest.raises(InputError, match="UTS09"):
        needed_files(source.list(), ["x"], required=[ghost.key])


def test_plan_is_cached_once_everything_is_fetched(server, tmp_path):
    from lmbrain.fetch import make_plan

    src, root, cache = _source(server), tmp_path / "ds", tmp_path / "plan.json"
    patterns = ["derivative/respdict.json", "derivative/preprocessed_data/UTS01/*.hf5"]
    args = (patterns, patterns[:1], ["UTS01"], r"derivative/preprocessed_data/([^/]+)/", cache)
    first = make_plan(src, root, *args)
    assert first["listed"] and not first["complete"]
    assert [f["key"] for f in first["files"]] == [
        "derivative/preprocessed_data/UTS01/a.hf5",
        BIG,
        "derivative/respdict.json",
    ]
    assert {f["group"] for f in first["files"]} == {"UTS01", "shared"}
    files = [RemoteFile(f["key"], f["size"], f["etag"]) for f in first["files"]]
    fetch(src, files, root, show_progress=False)
    n_requests = len(server.requests(""))
    second = make_plan(src, root, *args)
    assert second["complete"] and not second["listed"]
    assert len(server.requests("")) == n_requests  # no network at all
    (root / BIG).unlink()  # a file gone: the bucket is listed again, and it is to fetch
    third = make_plan(src, root, *args)
    assert third["listed"] and not third["complete"]


def test_plan_names_a_subject_the_bucket_lacks(server, tmp_path):
    from lmbrain.fetch import make_plan

    with pytest.raises(InputError, match="UTS09"):
        make_plan(
            _source(server),
            tmp_path / "ds",
            ["derivative/preprocessed_data/UTS09/*.hf5"],
            [],
            ["UTS09"],
            r"derivative/preprocessed_data/([^/]+)/",
            tmp_path / "plan.json",
        )
