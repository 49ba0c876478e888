"""The workflow fetches a public dataset from an S3 server on 127.0.0.1 (moto's server,
tests/s3_server.py, holding a LeBel et al. fixture in the published layout as bucket
`openneuro.org`): the dry run lists the download jobs, a run fetches only the keys one
subject needs, a second start fetches and lists nothing, the results equal those of the same
files read from disk, and a key missing from the bucket stops the start naming it.
Nothing reaches beyond loopback.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import dataset_fixtures as fx  # noqa: E402
from test_fetch import Server  # noqa: E402
from test_workflow import run_snakemake  # noqa: E402

pytest.importorskip("moto")
pytestmark = pytest.mark.slow
ACCESSION = "ds003020"


def _config(root: Path, endpoint: str, tiny_model_dir: Path, **lebel) -> dict:
    fetched = {
        "format": "lebel",
        "source": "openneuro",
        "s3_endpoint": endpoint,
        "path": str(root / "data" / ACCESSION),
        "subjects": ["UTS01"],
        **lebel,
    }
    local = {
        "format": "lebel",
        "path": str(root / "bucket" / ACCESSION),
        "subjects": ["UTS01"],
    }
    return {
        "seed": 0,
        "datasets": {"fetched": fetched, "local": local},
        "models": [{"name": "tiny-gpt2", "model": str(tiny_model_dir), "family": "gpt2"}],
        "layers": [1],
        "train_fractions": [1.0],
        "features": {"context_tokens": 16, "stride_tokens": 16, "batch_size": 16, "threads": 1},
        "fitting": {"alphas": {"logspace": [0, 4, 5]}, "n_folds": 3},
        "aggregate": {"n_bootstrap": 20},
        "alignment": {"enabled": False},
    }


def _gets(server: Server) -> list[str]:
    prefix = f"/openneuro.org/{ACCESSION}/"
    out = []
    for line in server.requests("GET"):
        path = line.split(" ")[1]
        if path.startswith(prefix) and len(path) > len(prefix):
            out.append(path[len(prefix) :])
    return out


@pytest.fixture(scope="module")
def fetched_run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("fetchwf")
    fx.make_lebel(root / "bucket" / ACCESSION)
    server = Server(root / "bucket", root)
    try:
        config = _config(root, server.endpoint, tiny_model_dir)
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        dry = run_snakemake(root, "-n", "--cores", "1")
        dry_out = dry.stdout + dry.stderr
        assert dry.returncode == 0, dry_out[-5000:]
        dry_gets = _gets(server)
        res = run_snakemake(root, "--cores", "2", "--resources", "openneuro_downloads=1")
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-8000:]
        gets = _gets(server)
        n_requests = len(server.requests(""))
        again = run_snakemake(root, "--cores", "2")
        again_out = again.stdout + again.stderr
        assert again.returncode == 0, again_out[-5000:]
        yield {
            "root": root,
            "server": server,
            "dry": dry_out,
            "dry_gets": dry_gets,
            "gets": gets,
            "out": out,
            "again": again_out,
            "new_requests": server.requests("")[n_requests:],
        }
    finally:
        server.stop()


def test_dry_run_lists_the_download_jobs(fetched_run):
    dry = fetched_run["dry"]
    assert "fetch_shared" in dry and "fetch_subject" in dry
    assert "files needed" in dry and "to fetch" in dry
    assert fetched_run["dry_gets"] == []  # the dry run lists the bucket, downloads nothing


def test_only_the_needed_keys_are_fetched(fetched_run):
    root = fetched_run["root"]
    bucket = root / "bucket" / ACCESSION
    # brute force: every file of the fixture but the other subject's
    expected = {
        p.relative_to(bucket).as_posix()
        for p in bucket.rglob("*")
        if p.is_file() and "UTS02" not in p.as_posix()
    }
    assert sorted(fetched_run["gets"]) == sorted(expected)  # each once
    data = root / "data" / ACCESSION
    for key in expected:
        assert (data / key).read_bytes() == (bucket / key).read_bytes()
    assert not list(data.rglob("*.part"))


def test_a_second_start_fetches_and_lists_nothing(fetched_run):
    assert fetched_run["new_requests"] == []
    assert "cached plan" in fetched_run["again"]
    assert "Nothing to be done" in fetched_run["again"]


def test_results_equal_those_of_the_local_copy(fetched_run):
    root = fetched_run["root"]
    a = pd.read_csv(root / "results/fetched/summary/scores.tsv", sep="\t")
    b = pd.read_csv(root / "results/local/summary/scores.tsv", sep="\t")
    assert len(a) == 1 and a["mean_r"].iloc[0] > 0.3
    # the same numbers; only the paths of the dataset's own outputs differ by its name
    a = a.replace(r"results/fetched/", "results/local/", regex=True)
    if "dataset" in b:
        a["dataset"] = b["dataset"]
    pd.testing.assert_frame_equal(a, b)


def test_a_missing_key_is_named(fetched_run, tmp_path, tiny_model_dir):
    root = fetched_run["root"]
    bucket = root / "bucket"
    server = Server(bucket, tmp_path)
    try:
        stories = ["alternateithicatom", "legacy", "nosuchstory", "wheretheressmoke"]
        config = _config(tmp_path, server.endpoint, tiny_model_dir, stories=stories)
        config["datasets"]["local"]["path"] = str(bucket / ACCESSION)
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        res = run_snakemake(tmp_path, "-n")
    finally:
        server.stop()
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "derivative/TextGrids/nosuchstory.TextGrid" in out and "not in the bucket" in out
    shutil.rmtree(tmp_path / "results", ignore_errors=True)


def test_a_deleted_file_is_fetched_again(fetched_run):
    """Last: a fetched file removed by hand makes its subject's download job run again."""
    root = fetched_run["root"]
    data = root / "data" / ACCESSION
    (data / "derivative/preprocessed_data/UTS01/legacy.hf5").unlink()
    dry = run_snakemake(root, "-n", "--cores", "1")
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-5000:]
    assert "fetch_subject" in out and "1 to fetch" in out
    assert "fetch_shared" not in out


def test_narratives_dry_run_takes_the_subjects_from_the_bucket(tmp_path, tiny_model_dir):
    """`subjects: all` of a dataset not fetched yet: the subjects are the bucket's, a download
    job per subject is listed, and nothing is downloaded by the dry run."""
    fx.make_narratives(tmp_path / "bucket" / "ds002345")
    server = Server(tmp_path / "bucket", tmp_path)
    try:
        config = _config(tmp_path, server.endpoint, tiny_model_dir)
        config["datasets"] = {
            "narr": {
                "format": "narratives",
                "source": "openneuro",
                "s3_endpoint": server.endpoint,
                "path": str(tmp_path / "data" / "ds002345"),
                "space": "fsaverage6",
            }
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        res = run_snakemake(tmp_path, "-n", "--cores", "1")
        gets = [
            line
            for line in server.requests("GET")
            if line.split(" ")[1].startswith("/openneuro.org/ds002345/")
        ]
    finally:
        server.stop()
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    subjects = sorted(
        p.name for p in (tmp_path / "bucket/ds002345/derivatives/afni-nosmooth").glob("sub-*")
    )
    assert len(subjects) > 1
    for subject in subjects:
        assert f"results/narr/fetch/subjects/{subject}.json" in out
    assert "fetch_shared" in out and gets == []
