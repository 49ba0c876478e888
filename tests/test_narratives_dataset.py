"""Narratives (ds002345) read as released: stories vs tasks vs conditions, BIDS sidecar
inheritance, story onsets from events.tsv, the published timing correction and scan
exclusions, repeated runs, and a timing test on the publishers' timeline.

The fixture (tests/dataset_fixtures.py, ``make_narratives``) copies the published layout; each
of its files cites the publishers' script it follows."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import dataset_fixtures as fx  # noqa: E402
from test_public_datasets import FITTING, TEMPORAL, write_rate_features  # noqa: E402

from lmbrain.datasets import open_dataset  # noqa: E402
from lmbrain.datasets.narratives import shift_run  # noqa: E402
from lmbrain.encoding import cv_shortfall, fit_encoding_model  # noqa: E402
from lmbrain.errors import InputError  # noqa: E402
from lmbrain.geometry import SurfaceGeometry  # noqa: E402
from lmbrain.stimulus import read_gentle_alignment  # noqa: E402


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("n") / "ds002345"
    truth = fx.make_narratives(root)
    return root, truth


def story_onset(events: Path) -> float:
    """The `story` event's onset, read here with the csv module (not the adapter)."""
    with events.open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return float(next(r["onset"] for r in rows if r["trial_type"] == "story"))


def test_defaults_read_the_release_as_published(release):
    root, _ = release
    ds = open_dataset(root, "narratives")  # no option: fsaverage6 surfaces, afni-nosmooth
    assert ds.stories == ["lucy", "milkywayoriginal", "milkywayvodka", "pieman", "tunnel"]
    assert ds.tr == 1.5 and ds.space == "fsaverage6" and ds.test_stories == ["tunnel"]
    assert ds.task("milkywayvodka") == "milkyway" and ds.condition("milkywayvodka") == "vodka"
    assert ds.task("pieman") == "pieman" and ds.condition("pieman") is None
    assert isinstance(ds.geometry("sub-001"), SurfaceGeometry)
    # the condition in participants.tsv picks the transcript
    assert ds.subject_stories("sub-001") == ["lucy", "milkywayoriginal", "pieman", "tunnel"]
    assert ds.subject_stories("sub-005") == ["lucy", "milkywayvodka", "pieman", "tunnel"]
    # scan_exclude.json: sub-003's milkyway scan is excluded
    assert ds.subject_stories("sub-003") == ["lucy", "pieman", "tunnel"]
    assert ds.subject_stories("sub-004") == ["milkywayvodka", "pieman", "tunnel"]


def test_a_task_name_in_stories_stands_for_its_transcripts(release):
    root, _ = release
    ds = open_dataset(root, "narratives", {"stories": ["pieman", "tunnel", "milkyway"]})
    assert ds.stories == ["milkywayoriginal", "milkywayvodka", "pieman", "tunnel"]
    with pytest.raises(InputError, match="'forgot'"):
        open_dataset(root, "narratives", {"stories": ["pieman", "tunnel", "forgot"]})


def test_tr_is_inherited_from_the_top_level_task_sidecar(tmp_path):
    fx.make_narratives(tmp_path)
    assert not list(tmp_path.glob("sub-*/func/*_bold.json"))
    assert open_dataset(tmp_path, "narratives").tr == 1.5
    (tmp_path / "task-milkyway_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    with pytest.raises(InputError, match="different TRs"):
        open_dataset(tmp_path, "narratives")
    (tmp_path / "task-milkyway_bold.json").unlink()
    with pytest.raises(InputError, match="task-milkyway_bold.json") as err:
        open_dataset(tmp_path, "narratives")
    assert "task milkyway (story milkywayoriginal)" in str(err.value)


def test_words_are_placed_by_the_events_onsets(release):
    root, _ = release
    ds = open_dataset(root, "narratives")
    for story, scan in [("pieman", "sub-001_task-pieman"), ("lucy", "sub-001_task-lucy")]:
        onset = story_onset(root / "sub-001" / "func" / f"{scan}_events.tsv")
        gentle, _ = read_gentle_alignment(ds.stimulus_path(story))
        words = ds.words(story)
        # the story's first word comes 0.6 s after its events.tsv onset (fixture truth)
        assert words.onsets[0] == pytest.approx(onset + 0.6)
        np.testing.assert_allclose(np.diff(words.onsets), np.diff(gentle.onsets))
    # stimulus_onsets overrides the audio start
    ds = open_dataset(root, "narratives", {"stimulus_onsets": {"lucy": 0.0}})
    assert ds.words("lucy").onsets[0] == pytest.approx(0.6)


def test_manifest_lists_exclusions_corrections_and_skips(release):
    root, _ = release
    ds = open_dataset(root, "narratives")
    manifest = ds.validate(["sub-003", "sub-004", "sub-005"])
    skipped = manifest["skipped"]
    assert {
        "subject": "sub-003",
        "story": "milkywayoriginal",
        "scan": "sub-003_task-milkyway",
        "reason": "scan_exclude.json",
    } in skipped
    assert {
        "subject": "sub-005",
        "story": "pieman",
        "scan": "sub-005_task-pieman_run-2",
        "reason": "scan_exclude.json",
    } in skipped
    assert {"subject": "sub-004", "story": "lucy", "reason": "no run in space-fsaverage6"} in (
        skipped
    )
    (fix,) = manifest["timing_corrections"]
    assert fix["scan"] == "sub-004_task-milkyway" and fix["shift_trs"] == 4
    assert fix["story_onset_s"] == 15.0 and fix["nominal_onset_s"] == 21.0
    assert manifest["subjects"]["sub-005"]["scans"]["pieman"] == ["sub-005_task-pieman_run-1"]
    assert manifest["repeated_runs"] == "average"
    off = open_dataset(root, "narratives", {"scan_exclude": False})
    assert "milkywayoriginal" in off.subject_stories("sub-003")


def test_repeated_runs_are_averaged_or_the_first_taken(release):
    root, _ = release
    ds = open_dataset(root, "narratives")
    runs = ds.runs("sub-002", "pieman")
    assert list(runs) == ["sub-002_task-pieman_run-1", "sub-002_task-pieman_run-2"]
    one, two = (ds._read_scan("sub-002", files) for files in runs.values())
    np.testing.assert_allclose(ds.responses("sub-002", "pieman"), (one + two) / 2, rtol=1e-6)
    first = open_dataset(root, "narratives", {"repeated_runs": "first"})
    np.testing.assert_array_equal(first.responses("sub-002", "pieman"), one)
    with pytest.raises(InputError, match="repeated_runs"):
        open_dataset(root, "narratives", {"repeated_runs": "last"})


def test_shift_run_moves_rows():
    y = np.arange(12, dtype=np.float32).reshape(6, 2)
    later = shift_run(y, 2)
    np.testing.assert_array_equal(later[2:], y)
    np.testing.assert_array_equal(later[:2], np.tile(y.mean(axis=0), (2, 1)))
    np.testing.assert_array_equal(shift_run(y, -2), y[2:])


def test_corrected_scan_lines_up_with_the_nominal_timeline(release):
    """sub-004's milkyway audio started 6 s early: once shifted by 4 TRs its planted signal
    correlates with sub-005's (on time) as well as sub-005's with itself one run later."""
    root, truth = release
    ds = open_dataset(root, "narratives")
    shifted = ds.responses("sub-004", "milkywayvodka")
    ontime = ds.responses("sub-005", "milkywayvodka")
    n = min(len(shifted), len(ontime))
    w = truth["weights"]
    r_fixed = np.corrcoef(shifted[4:n] @ w, ontime[4:n] @ w)[0, 1]
    raw = ds._read_scan("sub-004", ds.run_files("sub-004", "milkywayvodka"))
    r_raw = np.corrcoef(raw[4:n] @ w, ontime[4:n] @ w)[0, 1]
    assert r_fixed > 0.6 and r_fixed > r_raw + 0.3


@pytest.mark.parametrize("lag", [0, -5, 5])
def test_word_locked_signal_found_at_zero_lag_only(tmp_path, lag):
    """Plant the word rate on the publishers' timeline (events.tsv story onset + word time,
    computed by the fixture), moved by ``lag`` TRs: the fit finds it only at lag 0."""
    fx.make_narratives(tmp_path / "d", lag_trs=lag)
    ds = open_dataset(tmp_path / "d", "narratives")
    feats = write_rate_features(tmp_path / "f.h5", ds)
    for subject in ("sub-001", "sub-004"):  # sub-004: the corrected milkyway scan
        _, row = fit_encoding_model(ds, subject, feats, 1, 1.0, temporal=TEMPORAL, fitting=FITTING)
        if lag == 0:
            # 0.78 here; reading the Gentle times as story-relative gives 0.05 (sub-004),
            # ignoring events.tsv 0.20, leaving sub-004's correction out 0.57
            assert row["mean_r"] > 0.7, subject
        else:
            assert row["mean_r"] < 0.2, subject


def test_cv_shortfall_names_the_subject(release):
    root, _ = release
    ds = open_dataset(root, "narratives")
    assert cv_shortfall(ds, "sub-003", "test_stories") is None
    reason = cv_shortfall(ds, "sub-006", "test_stories")
    assert "sub-006 has 1 training and 1 test stories" in reason
    assert cv_shortfall(ds, "sub-006", "by_subject", ds.subjects) is None
    assert "none of the stories" in cv_shortfall(ds, "sub-999", "test_stories")


def test_volumes_need_a_mask(tmp_path):
    fx.make_narratives(tmp_path, surface=False)
    ds = open_dataset(tmp_path, "narratives", {"surface": False, "mask": "group_mask.nii.gz"})
    assert ds.space == "MNI152NLin2009cAsym"
    assert ds.responses("sub-002", "pieman").shape[1] == 60
    with pytest.raises(InputError, match="mask"):
        open_dataset(tmp_path, "narratives", {"surface": False}).validate(["sub-001"])


def test_left_and_right_disagree(tmp_path):
    fx.make_narratives(tmp_path)
    ds = open_dataset(tmp_path, "narratives")
    left, right = ds.run_files("sub-002", "tunnel")
    img = nib.load(right)
    nib.save(nib.gifti.GiftiImage(darrays=img.darrays[:-5]), right)
    with pytest.raises(InputError, match="TRs but") as err:
        ds.validate(["sub-002"])
    assert str(right) in str(err.value)


def test_missing_participants_tsv_is_named(tmp_path):
    fx.make_narratives(tmp_path)
    (tmp_path / "participants.tsv").unlink()
    with pytest.raises(InputError, match="participants.tsv"):
        open_dataset(tmp_path, "narratives").subject_stories("sub-001")


# -- DAG time: subjects with too few stories (rules/common.smk) --------------------------------
def dag_config(root: Path, subjects) -> Path:
    import yaml

    from lmbrain.testing import make_tiny_model

    if not (root / "gpt2").exists():
        make_tiny_model(root / "gpt2", arch="gpt2", hidden_size=32, n_layers=2, seed=0)
    config = {
        "seed": 0,
        "datasets": {
            "narratives": {
                "format": "narratives",
                "path": str(root / "ds002345"),
                "subjects": subjects,
            }
        },
        "models": [{"name": "tiny-gpt2", "model": str(root / "gpt2"), "family": "gpt2"}],
        "layers": [1],
        "train_fractions": [1.0],
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def test_dry_run_skips_a_subject_with_too_few_stories(tmp_path):
    from test_workflow import run_snakemake

    from lmbrain.testing import job_counts

    fx.make_narratives(tmp_path / "ds002345")
    dag_config(tmp_path, "all")
    res = run_snakemake(tmp_path, "-n")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "skipping subject sub-006: sub-006 has 1 training and 1 test stories" in out
    counts = job_counts(out)
    # sub-001..005: one fit job each (one model, one layer), none for sub-006
    assert counts["fit_encoding_model"] == 5 and counts["validate_subject"] == 5, counts
    target = "results/narratives/manifest/stimuli.json"
    res = run_snakemake(tmp_path, target, "--cores", "1")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    manifest = json.loads((tmp_path / target).read_text())
    (skip,) = manifest["skipped_subjects"]
    assert skip["subject"] == "sub-006" and "1 training" in skip["reason"]


def test_dry_run_stops_on_a_listed_subject_with_too_few_stories(tmp_path):
    from test_workflow import run_snakemake

    fx.make_narratives(tmp_path / "ds002345")
    dag_config(tmp_path, ["sub-001", "sub-006"])
    res = run_snakemake(tmp_path, "-n")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "subject 'sub-006' (listed in `subjects:`) cannot be fitted" in out
    assert "Job stats" not in out
