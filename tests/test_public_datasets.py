"""The public-dataset adapters: parsers, readers, bad input, the inter-subject ceiling, and the
outer cross-validation schemes (leave-one-run-out, by subject) on planted data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import dataset_fixtures as fx  # noqa: E402

from lmbrain.ceilings import isc_ceiling, spearman_brown, split_half_r, subject_ceiling  # noqa: E402
from lmbrain.datasets import open_dataset  # noqa: E402
from lmbrain.encoding import fit_encoding_model, outer_folds  # noqa: E402
from lmbrain.errors import InputError  # noqa: E402
from lmbrain.features import FeatureWriter  # noqa: E402
from lmbrain.geometry import VolumeGeometry  # noqa: E402
from lmbrain.stimulus import (  # noqa: E402
    Words,
    read_gentle_alignment,
    read_run_annotation,
    read_textgrid,
    read_textgrid_words,
)

TEMPORAL = {"method": "lanczos", "window": 3, "delays": [1, 2, 3, 4]}
FITTING = {
    "alphas": {"logspace": [0, 4, 5]},
    "n_folds": 3,
    "backend": "numpy",
    "solver": "auto",
    "n_targets_batch": None,
}


# -- parsers ---------------------------------------------------------------------------------
INTERVALS = [
    (0.0, 0.5, "sp"),
    (0.5, 0.9, "Hello"),
    (0.9, 1.0, ""),
    (1.0, 1.3, '"quoted"'),
    (1.3, 1.5, "{NS}"),
    (1.5, 1.6, "SENTENCE_END"),
    (1.6, 2.0, "world"),
    (2.0, 2.2, "{LG}"),
    (2.2, 2.5, "br"),
]


@pytest.mark.parametrize("short", [False, True])
def test_textgrid_long_and_short_formats(tmp_path, short):
    path = tmp_path / "story.TextGrid"
    fx.write_textgrid(path, INTERVALS, short=short)
    tiers = read_textgrid(path)
    assert list(tiers) == ["phone", "word"]
    assert tiers["word"] == [(a, b, t) for a, b, t in INTERVALS]
    words = read_textgrid_words(path)
    assert words.words == ["Hello", '"quoted"', "world"]
    np.testing.assert_allclose(words.times, [0.7, 1.15, 1.8])


def test_textgrid_fixture_words_match_truth(tmp_path):
    truth = fx.make_lebel(tmp_path)
    ds = open_dataset(tmp_path, "lebel")
    for story in truth["stories"]:
        assert ds.words(story).words == truth["words"][story]


def test_textgrid_without_word_tier(tmp_path):
    path = tmp_path / "story.TextGrid"
    fx.write_textgrid(path, INTERVALS)
    path.write_text(path.read_text().replace('name = "word"', 'name = "phones2"'))
    with pytest.raises(InputError, match="no word tier") as err:
        read_textgrid_words(path)
    assert str(path) in str(err.value)


def test_gentle_alignment_skips_unaligned_words(tmp_path):
    rng = np.random.default_rng(0)
    words, on, off = fx.story_words(rng, 20, 1.0)
    path = tmp_path / "align.json"
    path.write_text(json.dumps(fx.gentle_json(words, on, off, rng, n_unaligned=4)))
    got, skipped = read_gentle_alignment(path)
    assert skipped == 4 and got.words == words
    np.testing.assert_allclose(got.onsets, on)
    path.write_text(json.dumps({"transcript": "x"}))
    with pytest.raises(InputError, match="words"):
        read_gentle_alignment(path)


def test_run_annotation_accepts_other_column_names(tmp_path):
    path = tmp_path / "words.tsv"
    path.write_text("Onset\tWord\tOffset\tRun\n0.5\ta\t0.7\t2\n0.1\tb\t0.3\t1\n0.9\tc\t1.0\t2\n")
    runs = read_run_annotation(path)
    assert sorted(runs) == [1, 2] and runs[2].words == ["a", "c"] and runs[1].words == ["b"]
    path.write_text("word,onset,offset\na,0,1\n")
    with pytest.raises(InputError, match="no section column") as err:
        read_run_annotation(path)
    assert "run" in str(err.value) and str(path) in str(err.value)


# -- LeBel ------------------------------------------------------------------------------------
def test_lebel_pads_trimmed_responses_and_reads_hemispheres(tmp_path):
    fx.make_lebel(tmp_path)
    hemi = np.array(["L"] * 25 + ["R"] * 15)
    np.save(tmp_path / "UTS01_hemi.npy", hemi)
    ds = open_dataset(tmp_path, "lebel", {"hemispheres": "{subject}_hemi.npy"})
    y = ds.responses("UTS01", "legacy")
    with h5py.File(tmp_path / "derivative/preprocessed_data/UTS01/legacy.hf5") as fh:
        np.testing.assert_array_equal(y[10:-5], fh["data"][()])
    assert np.isnan(y[:10]).all() and np.isnan(y[-5:]).all()
    np.testing.assert_array_equal(ds.voxels("UTS01")["hemisphere"], hemi)
    assert ds.subject_stories("UTS02") == ["alternateithicatom", "legacy", "wheretheressmoke"]


def test_lebel_reads_the_release_row_counts_and_onset(tmp_path):
    """hf5 rows = respdict - 20; the run is respdict - 5 TRs; TextGrid 0 s is 10 s into it."""
    truth = fx.make_lebel(tmp_path)
    ds = open_dataset(tmp_path, "lebel")  # no option: the release as published
    assert ds.tr == 2.0 and (ds.trim_start, ds.trim_end) == (10, 5)
    manifest = ds.validate(["UTS01", "UTS02"])
    for story, n in truth["respdict"].items():
        with h5py.File(tmp_path / f"derivative/preprocessed_data/UTS01/{story}.hf5") as fh:
            assert fh["data"].shape[0] == n - 20
        assert ds.responses("UTS01", story).shape[0] == manifest["stories"][story]["n_trs"] == n - 5
        words = ds.words(story)
        assert words.words == truth["words"][story]
        np.testing.assert_allclose(words.onsets, truth["onsets"][story] + 10.0)
        # TR k of the run (k * 2 + 1 s) is the loader's TR k on the story clock (2k - 10 + 1)
        np.testing.assert_allclose(
            np.arange(n - 5) * ds.tr + ds.tr / 2 - ds.stimulus_onset(story),
            fx.lebel_trigger_times(n) + fx.LEBEL_TR / 2,
        )
    assert manifest["skipped"] == [
        {"subject": "UTS02", "story": "avatar", "reason": "no response file"}
    ]


def test_lebel_hemispheres_from_the_pycortex_mask(tmp_path):
    truth = fx.make_lebel(tmp_path)
    ds = open_dataset(tmp_path, "lebel")
    # brute force: voxel j is the j-th voxel of the (z, y, x) mask array in C order
    ijk = np.argwhere(truth["mask"].T)[:, ::-1]
    x = ijk @ fx.LPP_AFFINE[0, :3] + fx.LPP_AFFINE[0, 3]
    hemi = ds.voxels("UTS02")["hemisphere"]
    np.testing.assert_array_equal(hemi, np.where(x < 0, "L", "R"))
    assert {"L", "R"} <= set(hemi)
    assert ds.geometry("UTS02").n_voxels == 40


def test_lebel_without_hemisphere_source_stops(tmp_path):
    fx.make_lebel(tmp_path)
    mask = tmp_path / "derivative/pycortex-db/UTS01/transforms/UTS01_auto/mask_thick.nii.gz"
    mask.unlink()
    ds = open_dataset(tmp_path, "lebel")
    assert ds.geometry("UTS01") is None
    with pytest.raises(InputError, match="hemispheres") as err:
        ds.validate(["UTS01"])
    assert str(mask) in str(err.value) and "`mask`" in str(err.value)
    np.save(tmp_path / "UTS01_hemi.npy", np.array(["L", "R"] * 20))
    ds = open_dataset(tmp_path, "lebel", {"hemispheres": "{subject}_hemi.npy"})
    assert ds.validate(["UTS01"])["subjects"]["UTS01"]["n_left"] == 20


def test_lebel_trim_shorter_than_the_release_is_refused(tmp_path):
    fx.make_lebel(tmp_path)
    with pytest.raises(InputError, match="responses_trimmed"):
        open_dataset(tmp_path, "lebel", {"trim": {"start": 5}})
    ds = open_dataset(tmp_path, "lebel", {"trim": {"start": 12}})
    assert np.isnan(ds.responses("UTS01", "legacy")[:10]).all()


def test_lebel_word_tier_defaults_to_the_second_tier(tmp_path):
    truth = fx.make_lebel(tmp_path)
    path = tmp_path / "derivative/TextGrids/legacy.TextGrid"
    path.write_bytes(path.read_bytes().replace(b'"word"', b'"lexical"'))
    ds = open_dataset(tmp_path, "lebel")
    assert ds.words("legacy").words == truth["words"]["legacy"]


class ShiftedWords:
    """The dataset with every word moved by ``shift_s`` seconds."""

    def __init__(self, dataset, shift_s):
        self._d, self._shift = dataset, shift_s

    def words(self, story):
        w = self._d.words(story)
        return Words(w.words, w.onsets + self._shift, w.offsets + self._shift)

    def __getattr__(self, name):
        return getattr(self._d, name)


def test_lebel_timing_planted_on_the_publisher_timeline(tmp_path):
    """A word-rate signal planted on the loader's TR grid (tests/dataset_fixtures.py, from
    stimulus_utils.load_simulated_trfiles and the [5 + trim : -trim] rows) is found by the
    adapter + lanczos/FIR + ridge path at zero lag and lost with the words 5 TRs off."""
    fx.make_lebel(tmp_path)
    ds = open_dataset(tmp_path, "lebel")
    feats = write_rate_features(tmp_path / "f.h5", ds)
    r = {}
    for shift_trs in (-5, 0, 5):
        view = ShiftedWords(ds, shift_trs * ds.tr)
        _, row = fit_encoding_model(
            view, "UTS01", feats, 1, 1.0, temporal=TEMPORAL, fitting=FITTING
        )
        r[shift_trs] = row["mean_r"]
    # measured: 0.85 at lag 0, 0.12 (-5 TRs) and 0.02 (+5 TRs)
    assert r[0] > 0.7, r
    assert r[-5] < 0.3 and r[5] < 0.3, r


@pytest.mark.parametrize("order", ["pycortex", "C"])
def test_lebel_mask_gives_geometry(tmp_path, order):
    mask = np.ones(fx.LPP_SHAPE, dtype=bool)
    mask[0, :, 0] = mask[4, 3, :] = False
    fx.make_lebel(tmp_path, n_vox=int(mask.sum()))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), fx.LPP_AFFINE), tmp_path / "mask.nii.gz")
    ds = open_dataset(tmp_path, "lebel", {"mask": "mask.nii.gz", "mask_order": order})
    geo = ds.geometry("UTS01")
    assert isinstance(geo, VolumeGeometry) and geo.n_voxels == mask.sum()
    # brute force: voxel j is the j-th masked voxel in (z, y, x) C order (pycortex) or (x, y, z)
    ijk = np.argwhere(mask) if order == "C" else np.argwhere(mask.T)[:, ::-1]
    world = ijk @ fx.LPP_AFFINE[:3, :3].T + fx.LPP_AFFINE[:3, 3]
    np.testing.assert_allclose(geo.world_coordinates(), world)
    np.testing.assert_array_equal(
        ds.voxels("UTS01")["hemisphere"], np.where(world[:, 0] < 0, "L", "R")
    )


def test_lebel_hf5_without_data(tmp_path):
    fx.make_lebel(tmp_path)
    path = tmp_path / "derivative/preprocessed_data/UTS01/legacy.hf5"
    with h5py.File(path, "w") as fh:
        fh["responses"] = np.zeros((3, 40))
    ds = open_dataset(tmp_path, "lebel")
    with pytest.raises(InputError, match="no dataset 'data'") as err:
        ds.validate(["UTS01"])
    assert str(path) in str(err.value)


def test_lebel_tr_count_disagrees_with_respdict(tmp_path):
    fx.make_lebel(tmp_path)
    path = tmp_path / "derivative/preprocessed_data/UTS02/legacy.hf5"
    with h5py.File(path, "a") as fh:
        data = fh["data"][()]
        del fh["data"]
        fh["data"] = data[:-3]
    with pytest.raises(InputError, match="respdict") as err:
        open_dataset(tmp_path, "lebel").validate(["UTS02"])
    assert str(path) in str(err.value)


def test_lebel_repeats_give_a_ceiling(tmp_path):
    fx.make_lebel(tmp_path)
    with h5py.File(tmp_path / "derivative/preprocessed_data/UTS01/wheretheressmoke.hf5") as fh:
        y = fh["data"][()]
    rng = np.random.default_rng(0)
    reps = y[None] + 0.5 * rng.standard_normal((4, *y.shape)).astype(np.float32)
    with h5py.File(tmp_path / "UTS01_reps.hf5", "w") as fh:
        fh["data"] = reps
    ds = open_dataset(tmp_path, "lebel", {"repeats": "{subject}_reps.hf5"})
    ds.validate(["UTS01"])
    np.testing.assert_allclose(ds.test_target("UTS01", "wheretheressmoke")[10:-5], reps.mean(0))
    cc, source = subject_ceiling(ds, "UTS01", ["wheretheressmoke"])
    assert source == "repeats" and np.nanmean(cc) > 0.8


# -- Le Petit Prince --------------------------------------------------------------------------
def test_lpp_runs_mask_and_average(tmp_path):
    truth = fx.make_lpp(tmp_path)
    mask = fx.write_lpp_mask(tmp_path / "given_mask.nii.gz", truth["mask"])
    ds = open_dataset(tmp_path, "lpp", {"average_subject": True, "mask": str(mask)})
    assert ds.subjects[-1] == "average" and ds.stories == ["run-1", "run-2", "run-3", "run-4"]
    path = ds.run_path("sub-EN057", "run-2")
    assert "run-16" in path.name  # EN057's runs are numbered from 15
    vol = np.asarray(nib.load(path).dataobj)
    np.testing.assert_array_equal(ds.responses("sub-EN057", "run-2"), vol[truth["mask"]].T)
    group = ds.group_responses("run-2")
    np.testing.assert_allclose(ds.responses("average", "run-2"), group.mean(0), rtol=1e-6)
    x = ds.geometry("average").world_coordinates()[:, 0]
    np.testing.assert_array_equal(ds.voxels("sub-EN057")["hemisphere"] == "L", x < 0)


def test_lpp_image_shape_does_not_match_mask(tmp_path):
    truth = fx.make_lpp(tmp_path)
    opts = {"mask": str(fx.write_lpp_mask(tmp_path / "given_mask.nii.gz", truth["mask"]))}
    ds = open_dataset(tmp_path, "lpp", opts)
    path = ds.run_path("sub-EN059", "run-3")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 50), np.float32), fx.LPP_GRID_AFFINE), path)
    with pytest.raises(InputError, match="does not match the mask") as err:
        open_dataset(tmp_path, "lpp", opts).validate(["sub-EN059"])
    assert str(path) in str(err.value)


@pytest.mark.parametrize("drop, ok", [(1, True), (12, False)])
def test_lpp_run_shorter_than_annotation(tmp_path, drop, ok):
    fx.make_lpp(tmp_path)
    ds = open_dataset(tmp_path, "lpp")
    path = ds.run_path("sub-EN057", "run-1")
    img = nib.load(path)
    n_keep = int(np.ceil(ds.words("run-1").end / 2.0)) - drop
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., :n_keep], img.affine), path)
    if ok:
        open_dataset(tmp_path, "lpp").validate(["sub-EN057"])
        return
    with pytest.raises(InputError, match="more than one TR") as err:
        open_dataset(tmp_path, "lpp").validate(["sub-EN057"])
    assert str(path) in str(err.value)


# -- Narratives: tests/test_narratives_dataset.py --------------------------------------------


# -- inter-subject ceiling ---------------------------------------------------------------------
def test_spearman_brown_closed_form():
    rho = np.array([0.2, 0.5])
    np.testing.assert_allclose(spearman_brown(rho, 2.0), 2 * rho / (1 + rho))
    np.testing.assert_allclose(spearman_brown(spearman_brown(rho, 4.0), 0.25), rho)


def test_isc_ceiling_recovers_planted_shared_signal():
    rng = np.random.default_rng(0)
    n_sub, n_trs, n_vox = 12, 4000, 6
    noise_sd = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
    s = rng.standard_normal((n_trs, n_vox))
    data = s[None] + noise_sd * rng.standard_normal((n_sub, n_trs, n_vox))
    single = isc_ceiling(data, group_size=1, n_splits=10, seed=0)
    group = isc_ceiling(data, group_size=n_sub, n_splits=10, seed=0)
    np.testing.assert_allclose(single, np.sqrt(1 / (1 + noise_sd**2)), atol=0.03)
    np.testing.assert_allclose(group, np.sqrt(1 / (1 + noise_sd**2 / n_sub)), atol=0.03)
    # brute force: the correlation of each subject (and of the mean) with the shared signal
    brute = [np.corrcoef(data[i, :, v], s[:, v])[0, 1] for i in range(n_sub) for v in [1]]
    assert single[1] == pytest.approx(np.mean(brute), abs=0.03)
    r_half, half = split_half_r(data, 3, seed=1)
    assert half == 6 and np.all((r_half > 0) & (r_half < 1))


def test_isc_ceiling_of_a_dataset_matches_the_planted_truth(tmp_path):
    # fixture: subject response = w * s + N(0, 0.8^2) with s standardised over the run
    truth = fx.make_lpp(tmp_path, n_subjects=8)
    mask = fx.write_lpp_mask(tmp_path / "given_mask.nii.gz", truth["mask"])
    ds = open_dataset(tmp_path, "lpp", {"average_subject": True, "mask": str(mask)})
    w = truth["weights"]
    for subject, m in [("sub-EN057", 1), ("average", 8)]:
        cc, source = subject_ceiling(ds, subject, ds.stories, n_splits=10)
        expected = np.sqrt(w**2 / (w**2 + 0.64 / m))
        assert source == "isc"
        assert np.mean(np.abs(cc - expected)) < 0.03, subject
        assert np.corrcoef(cc, expected)[0, 1] > 0.9


def test_isc_ceiling_of_a_dataset(tmp_path):
    fx.make_lpp(tmp_path)
    ds = open_dataset(tmp_path, "lpp", {"average_subject": True})
    single, source = subject_ceiling(ds, "sub-EN057", ["run-4"], n_splits=5)
    group, _ = subject_ceiling(ds, "average", ["run-4"], n_splits=5)
    assert source == "isc" and np.all(group > single)
    none, source = subject_ceiling(ds, "sub-EN057", ["run-4"], method="repeats")
    assert source == "none" and np.isnan(none).all()


# -- outer cross-validation --------------------------------------------------------------------
def write_rate_features(path: Path, dataset, seed: int = 0) -> Path:
    """Features that carry the word rate (a constant column) plus noise columns."""
    rng = np.random.default_rng(seed)
    info = {"n_layers": 1, "n_params": 1000, "model": "rate"}
    with FeatureWriter(path, info) as writer:
        for story in dataset.stories:
            n = len(dataset.words(story))
            feats = np.column_stack([np.ones(n), 0.1 * rng.standard_normal((n, 3))])
            writer.add(story, 1, feats.astype(np.float32))
    return path


class HeldOut:
    """A dataset view whose only test story is ``held`` (for brute-force folds)."""

    def __init__(self, dataset, held, train):
        self._d, self.test_stories, self.train_stories = dataset, [held], train

    def __getattr__(self, name):
        return getattr(self._d, name)


def test_leave_one_run_out_is_the_mean_of_single_folds(tmp_path):
    fx.make_lpp(tmp_path / "data")
    ds = open_dataset(tmp_path / "data", "lpp")
    feats = write_rate_features(tmp_path / "f.h5", ds)
    cv = {**FITTING, "cv": "leave_one_run_out"}
    vox, row = fit_encoding_model(ds, "sub-EN058", feats, 1, 1.0, temporal=TEMPORAL, fitting=cv)
    assert row["n_outer_folds"] == 4 and row["mean_r"] > 0.3
    assert row["train_stories"] == row["test_stories"] == ",".join(ds.stories)
    per_fold = []
    for held in ds.stories:
        rest = [s for s in ds.stories if s != held]
        view = HeldOut(ds, held, rest)
        v, _ = fit_encoding_model(
            view, "sub-EN058", feats, 1, 1.0, temporal=TEMPORAL, fitting=FITTING
        )
        per_fold.append(v["r"])
    np.testing.assert_allclose(vox["r"], np.mean(per_fold, axis=0), rtol=1e-5, atol=1e-6)


def test_fractions_sharing_design_matrices_fit_as_alone(tmp_path, monkeypatch):
    """The workflow's fit job fits a layer's fractions with one cache of design matrices."""
    import lmbrain.encoding as encoding

    fx.make_lpp(tmp_path / "data")
    ds = open_dataset(tmp_path / "data", "lpp")
    feats = write_rate_features(tmp_path / "f.h5", ds)
    cv = {**FITTING, "cv": "leave_one_run_out"}
    built, real = [], encoding.story_design
    monkeypatch.setattr(
        encoding, "story_design", lambda *a, **k: built.append(a[2]) or real(*a, **k)
    )
    designs = {}
    for fraction in (0.5, 1.0):
        shared, row = fit_encoding_model(
            ds, "sub-EN058", feats, 1, fraction, temporal=TEMPORAL, fitting=cv, designs=designs
        )
        alone, alone_row = fit_encoding_model(
            ds, "sub-EN058", feats, 1, fraction, temporal=TEMPORAL, fitting=cv
        )
        for key in ["r", "alpha", "cv_score"]:
            np.testing.assert_array_equal(shared[key], alone[key])
        assert row["n_train_trs"] == alone_row["n_train_trs"]
    assert row["n_train_trs"] > 0 and len(designs) == len(ds.stories)
    # shared: each story once for both fractions; alone: once per call
    assert len(built) == len(ds.stories) * (1 + 2)


def test_by_subject_trains_on_the_other_subjects(tmp_path):
    fx.make_narratives(tmp_path / "data")
    ds = open_dataset(tmp_path / "data", "narratives")
    folds = outer_folds(ds, "sub-002", 1.0, "by_subject", 0)
    ((train, test),) = folds
    assert {s for s, _ in train} == {"sub-001", "sub-003", "sub-004", "sub-005", "sub-006"}
    # stories per subject (fixture): 4, 3 (milkyway excluded), 3 (no lucy), 4, 2
    assert ("sub-004", "lucy") not in train and len(train) == 4 + 3 + 3 + 4 + 2
    assert test == [("sub-002", s) for s in ds.subject_stories("sub-002")]
    half = outer_folds(ds, "sub-002", 0.5, "by_subject", 0)[0][0]
    assert {s for s, _ in half} < {s for s, _ in train}
    feats = write_rate_features(tmp_path / "f.h5", ds)
    cv = {**FITTING, "cv": "by_subject"}
    _, row = fit_encoding_model(ds, "sub-002", feats, 1, 1.0, temporal=TEMPORAL, fitting=cv)
    assert row["cv"] == "by_subject" and row["mean_r"] > 0.3 and row["n_train_subjects"] == 5


# -- configuration ------------------------------------------------------------------------------
def test_config_block_reaches_the_adapter_and_typos_are_caught():
    from lmbrain.config import validate_config
    from lmbrain.datasets import adapter_options
    from lmbrain.errors import ConfigError

    base = {"models": [{"model": "x"}]}
    block = {"format": "lebel", "path": "/d", "tr": 2.0, "trim": {"start": 5}, "subjects": ["A"]}
    cfg = validate_config({**base, "datasets": {"d": block}, "fitting": {"cv": "by_subject"}})
    assert adapter_options(cfg["datasets"]["d"]) == {"tr": 2.0, "trim": {"start": 5}}
    assert cfg["datasets"]["d"]["ceiling"] == {"method": "auto", "n_splits": 20}
    for bad, key in [
        ({"fitting": {"cv": "folds"}}, "fitting.cv"),
        ({"datasets": {"d": {**block, "trim": {"start": -1}}}}, "datasets.d.trim.start"),
        ({"datasets": {"d": {**block, "format": "bids"}}}, "datasets.d.format"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate_config({**base, "datasets": {"d": block}, **bad})


def test_gifti_shape_from_header_matches_the_data(tmp_path):
    from lmbrain.datasets.narratives import _gifti_shape, _read_gifti

    data = np.arange(30 * 7, dtype=np.float32).reshape(7, 30)
    per_tr = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(row) for row in data])
    one = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.ascontiguousarray(data.T))])
    for name, img in [("per_tr.func.gii", per_tr), ("one.func.gii", one)]:
        nib.save(img, tmp_path / name)
        assert _gifti_shape(tmp_path / name) == (7, 30)
        np.testing.assert_array_equal(_read_gifti(tmp_path / name), data)


def test_lebel_speech_features_share_the_story_onset(tmp_path):
    """The recording starts at TextGrid 0 s: speech-model window times get the same 10 s."""
    from lmbrain.audio import window_times, write_wav
    from lmbrain.features import extract_story_features
    from lmbrain.models import load_model
    from lmbrain.testing import make_tiny_audio_model

    fx.make_lebel(tmp_path / "data")
    ds = open_dataset(tmp_path / "data", "lebel")
    rate, duration = 16000, 3.0
    (tmp_path / "data" / "stimuli").mkdir()
    tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(int(rate * duration)) / rate)
    write_wav(ds.audio_path("legacy"), tone.astype(np.float32), rate)
    folder = make_tiny_audio_model(tmp_path / "hubert", arch="hubert", seed=1)
    model, extractor, _ = load_model({"model": str(folder)}, tmp_path / "cache")
    times, _ = extract_story_features(
        ds, "legacy", model, extractor, [1], context_tokens=8, audio_stride_s=0.5
    )
    np.testing.assert_allclose(times, window_times(duration, 0.5) + 10.0)


def test_lebel_and_narratives_ignore_hidden_files(tmp_path):
    """macOS leaves `._<name>` AppleDouble files and `.DS_Store` beside copied data; the
    `*.TextGrid` and `*/align.json` patterns would otherwise take them for stories."""
    fx.make_lebel(tmp_path / "lebel")
    grids = tmp_path / "lebel" / "derivative" / "TextGrids"
    ds = open_dataset(tmp_path / "lebel", "lebel")
    before = (ds.stories, ds.subjects)
    (grids / "._legacy.TextGrid").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (grids / ".DS_Store").write_bytes(b"\x00")
    (tmp_path / "lebel" / "derivative" / "preprocessed_data" / ".ipynb_checkpoints").mkdir()
    ds = open_dataset(tmp_path / "lebel", "lebel")
    assert (ds.stories, ds.subjects) == before

    fx.make_narratives(tmp_path / "narr")
    gentle = tmp_path / "narr" / "stimuli" / "gentle"
    before = open_dataset(tmp_path / "narr", "narratives").stories
    (gentle / ".Trash").mkdir()
    (gentle / ".Trash" / "align.json").write_text("not json")
    assert open_dataset(tmp_path / "narr", "narratives").stories == before
