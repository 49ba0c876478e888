"""The NSD adapter on a small fixture in the published layout (written here, not downloaded)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.io import savemat

from lmbrain.datasets import open_dataset
from lmbrain.datasets.nsd import TRIALS_PER_SESSION, stimulus_id
from lmbrain.errors import InputError

SHAPE = (4, 5, 3)
AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])
AFFINE[0, 3] = -3.6  # x < 0 for i < 2: left hemisphere


def make_nsd(root: Path, sessions={"subj01": [1, 2], "subj02": [1]}, hdf5=("subj02",)):  # noqa: B006
    rng = np.random.default_rng(0)
    n_img = 40
    masterordering = rng.integers(1, n_img + 1, size=2 * TRIALS_PER_SESSION)
    subjectim = np.zeros((8, n_img), dtype=np.int64)
    for s in range(8):
        subjectim[s, :10] = np.arange(1, 11) * 7  # shared images (1-based nsdIds)
        subjectim[s, 10:] = 1000 + 100 * s + np.arange(n_img - 10)
    exp = root / "nsddata" / "experiments" / "nsd"
    exp.mkdir(parents=True)
    savemat(
        exp / "nsd_expdesign.mat",
        {
            "masterordering": masterordering[None, :],
            "subjectim": subjectim,
            "sharedix": (np.arange(1, 11) * 7)[None, :],
        },
    )
    nsd_ids = sorted(set((subjectim - 1).ravel().tolist()))
    rows = ["nsdId,cocoId,cocoSplit"] + [
        f"{i},{50000 + i},{'train2017' if i % 2 else 'val2017'}" for i in nsd_ids
    ]
    (exp / "nsd_stim_info_merged.csv").write_text("\n".join(rows) + "\n")
    ann = root / "nsddata_stimuli" / "stimuli" / "nsd" / "annotations"
    ann.mkdir(parents=True)
    for split in ("train2017", "val2017"):
        keep = [i for i in nsd_ids if (i % 2 == 1) == (split == "train2017")]
        caps = [
            {"image_id": 50000 + i, "id": 2 * k + j, "caption": f"image {i} caption {j}"}
            for k, i in enumerate(keep)
            for j in range(2)
        ]
        (ann / f"captions_{split}.json").write_text(json.dumps({"annotations": caps}))
    mask = rng.random(SHAPE) < 0.6
    streams = rng.integers(0, 3, SHAPE)
    for subject, sess in sessions.items():
        roi = root / "nsddata" / "ppdata" / subject / "func1pt8mm" / "roi"
        roi.mkdir(parents=True)
        nib.save(nib.Nifti1Image(mask.astype(np.int16), AFFINE), roi / "nsdgeneral.nii.gz")
        nib.save(nib.Nifti1Image(streams.astype(np.int16), AFFINE), roi / "streams.nii.gz")
        betas = root / "nsddata_betas" / "ppdata" / subject / "func1pt8mm"
        betas = betas / "betas_fithrf_GLMdenoise_RR"
        betas.mkdir(parents=True)
        for s in sess:
            data = rng.integers(-900, 900, (*SHAPE, TRIALS_PER_SESSION)).astype(np.int16)
            if subject in hdf5:
                import h5py

                with h5py.File(betas / f"betas_session{s:02d}.hdf5", "w") as fh:
                    fh["betas"] = data.transpose(3, 2, 1, 0)
            else:
                nib.save(nib.Nifti1Image(data, AFFINE), betas / f"betas_session{s:02d}.nii.gz")
            np.save(betas / f"truth_{s:02d}.npy", data)  # for the test only
    return root, masterordering, subjectim, mask, streams


def test_trials_follow_the_design(tmp_path):
    root, order, subjectim, _, _ = make_nsd(tmp_path)
    ds = open_dataset(root, "nsd")
    assert ds.subjects == ["subj01", "subj02"]
    trials = ds.trials("subj01")
    assert len(trials["stimulus"]) == 2 * TRIALS_PER_SESSION
    for t in (0, 1, 749, 750, 1499):
        nsd_id = subjectim[0, order[t] - 1] - 1  # both 1-based in the .mat file
        assert trials["stimulus"][t] == stimulus_id(nsd_id)
    assert list(trials["session"][[0, 749, 750]]) == ["1", "1", "2"]
    assert len(ds.trials("subj02")["stimulus"]) == TRIALS_PER_SESSION


def test_betas_are_masked_percent_signal_change(tmp_path):
    root, _, _, mask, _ = make_nsd(tmp_path)
    ds = open_dataset(root, "nsd")
    folder = root / "nsddata_betas" / "ppdata"
    for subject, sessions in [("subj01", [1, 2]), ("subj02", [1])]:
        got = ds.betas(subject)
        truth = [
            np.load(
                folder
                / subject
                / "func1pt8mm"
                / "betas_fithrf_GLMdenoise_RR"
                / f"truth_{s:02d}.npy"
            )
            for s in sessions
        ]
        want = (
            np.concatenate(
                [
                    np.stack(
                        [t[i, j, k] for i, j, k in zip(*np.nonzero(mask), strict=True)], axis=1
                    )
                    for t in truth
                ]
            )
            / 300.0
        )
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_voxels_captions_and_test_images(tmp_path):
    root, _, _, mask, streams = make_nsd(tmp_path)
    ds = open_dataset(root, "nsd")
    vox = ds.voxels("subj01")
    i, _, _ = np.nonzero(mask)
    np.testing.assert_array_equal(vox["hemisphere"] == "L", i < 2)
    names = {0: "", 1: "early", 2: "midventral"}
    assert list(vox["roi"]) == [names[v] for v in streams[mask]]
    assert ds.geometry("subj01").n_voxels == mask.sum()
    shared = {stimulus_id(7 * k - 1) for k in range(1, 11)}
    shown_by_both = set(ds.trials("subj01")["stimulus"]) & set(ds.trials("subj02")["stimulus"])
    assert set(ds.test_stimuli) == shared & shown_by_both
    assert ds.captions[stimulus_id(13)] == ["image 13 caption 0", "image 13 caption 1"]
    manifest = ds.validate(ds.subjects)
    assert manifest["subjects"]["subj01"]["n_voxels"] == mask.sum()


def test_fits_and_ceiling_run_on_nsd(tmp_path):
    from lmbrain.sentence_features import random_features
    from lmbrain.trial_encoding import fit_trial_encoding_model, subject_ceiling

    root, *_ = make_nsd(tmp_path)
    ds = open_dataset(root, "nsd")
    ceiling = subject_ceiling(ds, "subj01")
    feats = random_features(ds.stimuli, 4, 0)
    fitting = {"alphas": [1, 100], "n_folds": 3, "backend": "numpy", "solver": "auto"}
    vox, row = fit_trial_encoding_model(
        ds, "subj01", feats, ds.stimuli, 1.0, fitting=fitting, cc_max=ceiling["cc_max"]
    )
    assert vox["r"].shape == (ds.mask("subj01")[0].sum(),)
    assert row["n_test_stimuli"] == len(ds.test_stimuli)
    # the seed papers' summaries are computed from the same voxel arrays
    from lmbrain.scoring import reliable_voxels

    top = reliable_voxels(vox["cc_max"], 0.25)
    assert row["n_voxels_reliable"] == top.sum() > 0
    assert row["mean_r_reliable"] == pytest.approx(np.nanmean(vox["r"][top]))
    assert row["mean_signed_r2"] == pytest.approx(np.nanmean(np.sign(vox["r"]) * vox["r"] ** 2))


def test_missing_design_names_the_file(tmp_path):
    root, *_ = make_nsd(tmp_path)
    path = root / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat"
    path.unlink()
    with pytest.raises(InputError) as err:
        open_dataset(root, "nsd")
    assert err.value.path == str(path)
