"""Le Petit Prince (ds003643) as released: run identity, defaults, derived mask, timing."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import dataset_fixtures as fx  # noqa: E402

from lmbrain.datasets import lpp as lpp_module  # noqa: E402
from lmbrain.datasets import open_dataset  # noqa: E402
from lmbrain.encoding import fit_encoding_model  # noqa: E402
from lmbrain.errors import InputError  # noqa: E402
from lmbrain.features import FeatureWriter  # noqa: E402


def given_mask(root: Path, truth: dict) -> dict:
    return {"mask": str(fx.write_lpp_mask(root / "given_mask.nii.gz", truth["mask"]))}


def run_data(path: Path, mask: np.ndarray) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)[mask].T


def test_defaults_are_the_publishers(tmp_path):
    fx.make_lpp(tmp_path)
    ds = open_dataset(tmp_path, "lpp")
    # BGP llms_brain_lateralization.py L28 (t_r = 2); fit_average_subject.py L50-53 ([10:-10])
    assert ds.tr == 2.0 and (ds.trim_start, ds.trim_end) == (10, 10)
    assert ds.task == "task-lppEN" and ds.stories == ["run-1", "run-2", "run-3", "run-4"]


def test_other_languages_are_not_english_subjects(tmp_path):
    fx.make_lpp(tmp_path, n_subjects=2)
    fr = tmp_path / "derivatives" / "sub-FR001" / "func"
    fr.mkdir(parents=True)
    src = next((tmp_path / "derivatives" / "sub-EN057" / "func").iterdir())
    (fr / "sub-FR001_task-lppFR_run-1_space-MNIColin27_desc-preproc_bold.nii.gz").write_bytes(
        src.read_bytes()
    )
    assert open_dataset(tmp_path, "lpp").subjects == ["sub-EN057", "sub-EN058"]


def test_runs_sorted_by_number_not_text(tmp_path):
    fx.make_lpp(tmp_path)
    ds = open_dataset(tmp_path, "lpp")
    # EN058's runs are run-8 .. run-11: a text sort would put run-10 and run-11 first
    names = [ds.run_path("sub-EN058", s).name for s in ds.stories]
    assert [n.split("_run-")[1].split("_")[0] for n in names] == ["8", "9", "10", "11"]


def test_missing_middle_run_keeps_later_sections_on_their_own_runs(tmp_path):
    truth = fx.make_lpp(tmp_path, missing={(1, 2)})  # EN057 lacks section 2 (its run-16)
    ds = open_dataset(tmp_path, "lpp", given_mask(tmp_path, truth))
    func = tmp_path / "derivatives" / "sub-EN057" / "func"
    assert ds.run_path("sub-EN057", "run-2") is None
    for section, run in [(1, 15), (3, 17), (4, 18)]:
        path = ds.run_path("sub-EN057", f"run-{section}")
        assert path == func / fx.lpp_bold_name("EN057", run)
        np.testing.assert_array_equal(
            ds.responses("sub-EN057", f"run-{section}"), run_data(path, truth["mask"])
        )
    manifest = ds.validate(["sub-EN057", "sub-EN058"])
    assert manifest["skipped"] == [{"subject": "sub-EN057", "story": "run-2", "reason": "no run"}]
    assert manifest["subjects"]["sub-EN057"]["stories"] == ["run-1", "run-3", "run-4"]
    assert manifest["subjects"]["sub-EN057"]["runs"]["run-3"] == fx.lpp_bold_name("EN057", 17)


def test_missing_first_run(tmp_path):
    truth = fx.make_lpp(tmp_path, missing={(2, 1)})
    ds = open_dataset(tmp_path, "lpp", given_mask(tmp_path, truth))
    assert ds.subject_stories("sub-EN058") == ["run-2", "run-3", "run-4"]
    assert ds.run_path("sub-EN058", "run-2").name == fx.lpp_bold_name("EN058", 9)


def test_unidentifiable_run_names_the_file(tmp_path):
    truth = fx.make_lpp(tmp_path, missing={(1, 2)})
    path = tmp_path / "derivatives" / "sub-EN057" / "func" / fx.lpp_bold_name("EN057", 17)
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., :-3], img.affine), path)
    ds = open_dataset(tmp_path, "lpp", given_mask(tmp_path, truth))
    with pytest.raises(InputError, match="cannot tell which section") as err:
        ds.subject_stories("sub-EN057")
    assert str(path) in str(err.value)


def test_run_one_tr_short_is_still_identified(tmp_path):
    truth = fx.make_lpp(tmp_path, missing={(1, 2)})
    path = tmp_path / "derivatives" / "sub-EN057" / "func" / fx.lpp_bold_name("EN057", 17)
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., :-1], img.affine), path)
    ds = open_dataset(tmp_path, "lpp", given_mask(tmp_path, truth))
    assert ds.run_path("sub-EN057", "run-3") == path


def test_no_complete_subject(tmp_path):
    truth = fx.make_lpp(tmp_path, n_subjects=2, missing={(1, 2), (2, 3)})
    ds = open_dataset(tmp_path, "lpp", given_mask(tmp_path, truth))
    with pytest.raises(InputError, match="no subject has all 4 runs"):
        ds.subject_stories("sub-EN057")


def test_two_files_for_one_run(tmp_path):
    fx.make_lpp(tmp_path, n_subjects=1)
    func = tmp_path / "derivatives" / "sub-EN057" / "func"
    src = func / fx.lpp_bold_name("EN057", 15)
    (func / src.name.replace("MNIColin27", "MNI152NLin2009cAsym")).write_bytes(src.read_bytes())
    with pytest.raises(InputError, match="also run 15"):
        _ = open_dataset(tmp_path, "lpp").subjects


def test_dotfiles_under_derivatives_are_ignored(tmp_path):
    fx.make_lpp(tmp_path, n_subjects=2)
    func = tmp_path / "derivatives" / "sub-EN057" / "func"
    (func / ("._" + fx.lpp_bold_name("EN057", 15))).write_bytes(b"\x00\x05\x16\x07")
    (func / ".DS_Store").write_bytes(b"\x00")
    ds = open_dataset(tmp_path, "lpp")
    assert ds.run_path("sub-EN057", "run-1").name == fx.lpp_bold_name("EN057", 15)


# -- the derived mask --------------------------------------------------------------------------
def test_symmetric_mask_brute_force():
    rng = np.random.default_rng(0)
    mask = rng.random((7, 5, 4)) < 0.6
    affine = np.array([[2.0, 0, 0, -5.0], [0, 2, 0, 1], [0, 0, 2, 3], [0, 0, 0, 1]])  # off-centre
    out = lpp_module.symmetric_mask(mask, affine)
    for i, j, k in np.ndindex(mask.shape):
        x = affine[0, 0] * i + affine[0, 3]
        mi = (-x - affine[0, 3]) / affine[0, 0]  # the voxel at -x
        mirror = mi.is_integer() and 0 <= mi < mask.shape[0] and mask[int(mi), j, k]
        assert out[i, j, k] == (mask[i, j, k] and mirror), (i, j, k)


def test_derived_mask(tmp_path, monkeypatch):
    truth = fx.make_lpp(tmp_path)
    ds = open_dataset(tmp_path, "lpp")
    mask = ds.geometry("sub-EN057").mask
    brain = truth["mask"]
    assert ds.mask_path.parent == tmp_path / ".lmbrain"
    assert not (mask & ~brain).any()  # nothing outside the brain
    assert mask.sum() > 0.75 * brain.sum()  # most of it (the EPI mask's opening erodes the rim)
    np.testing.assert_array_equal(mask, mask[::-1])  # symmetric: the grid is centred on x = 0
    # cached: a second reader does not derive it again
    monkeypatch.setattr(lpp_module, "derive_mask", lambda *a: pytest.fail("derived twice"))
    again = open_dataset(tmp_path, "lpp")
    assert again.mask_path == ds.mask_path
    np.testing.assert_array_equal(again.geometry("sub-EN057").mask, mask)
    # a mask of one's own wins
    own = open_dataset(tmp_path, "lpp", given_mask(tmp_path, truth))
    np.testing.assert_array_equal(own.geometry("sub-EN057").mask, brain)


def test_derived_mask_follows_the_runs(tmp_path):
    fx.make_lpp(tmp_path, n_subjects=2)
    first = open_dataset(tmp_path, "lpp").mask_path
    path = tmp_path / "derivatives" / "sub-EN057" / "func" / fx.lpp_bold_name("EN057", 15)
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., :-1], img.affine), path)
    assert open_dataset(tmp_path, "lpp").mask_path != first


# -- timing on the publishers' timeline -------------------------------------------------------
TEMPORAL = {"method": "lanczos", "window": 3, "delays": [1, 2, 3, 4]}
FITTING = {
    "alphas": {"logspace": [0, 4, 5]},
    "n_folds": 3,
    "backend": "numpy",
    "solver": "auto",
    "n_targets_batch": None,
}


def word_locked(lag: int, delay: int = 2):
    """Words whose onset falls in each scan (scan k covers [k*tr, (k+1)*tr) s of the
    section's run, onsets as in the annotation: BGP fit_average_subject.py L96), seen
    ``delay + lag`` scans later."""

    def signal(section, onsets, offsets, n_trs):
        count = np.zeros(n_trs)
        for t in onsets:
            count[min(int(t // 2.0), n_trs - 1)] += 1
        shift = delay + lag
        out = np.zeros(n_trs)
        if shift >= 0:
            out[shift:] = count[: n_trs - shift]
        else:
            out[:shift] = count[-shift:]
        return (out - out.mean()) / out.std()

    return signal


@pytest.mark.parametrize("lag", [0, -5, 5])
def test_word_locked_signal_found_at_lag_zero_only(tmp_path, lag):
    truth = fx.make_lpp(tmp_path, n_subjects=1, signal=word_locked(lag))
    ds = open_dataset(tmp_path, "lpp", given_mask(tmp_path, truth))
    with FeatureWriter(tmp_path / "f.h5", {"n_layers": 1, "n_params": 1, "model": "rate"}) as fw:
        for story in ds.stories:
            fw.add(story, 1, np.ones((len(ds.words(story)), 1), np.float32))
    cv = {**FITTING, "cv": "leave_one_run_out"}
    _, row = fit_encoding_model(
        ds, "sub-EN057", tmp_path / "f.h5", 1, 1.0, temporal=TEMPORAL, fitting=cv
    )
    if lag == 0:
        assert row["mean_r"] > 0.5, row["mean_r"]
    else:
        assert row["mean_r"] < 0.2, row["mean_r"]
