"""The native trial layout: reading, and the errors bad files give (each names the file)."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from lmbrain.datasets import open_dataset
from lmbrain.errors import InputError


def make_trials(root: Path, n_vox=6, subjects=("s1",), test=("i5", "i6")):
    """Seven images with 1-2 captions each, 2 repeats, two sessions."""
    rng = np.random.default_rng(0)
    for sub in ("stimuli", "trials", "voxels"):
        (root / sub).mkdir(parents=True)
    images = [f"i{k}" for k in range(7)]
    lines = ["stimulus\tcaption"]
    for k, img in enumerate(images):
        lines.append(f"{img}\ta photo of thing {k}")
        if k % 2:
            lines.append(f"{img}\tanother view of thing {k}")
    (root / "stimuli" / "captions.tsv").write_text("\n".join(lines) + "\n")
    (root / "stimuli" / "categories.tsv").write_text(
        "stimulus\tcategory\n" + "".join(f"{img}\tc{k % 2}\n" for k, img in enumerate(images))
    )
    yaml.safe_dump(
        {"kind": "trials", "test_stimuli": list(test), "subjects": list(subjects)},
        (root / "dataset.yaml").open("w"),
    )
    order = images + images[::-1]
    for subject in subjects:
        rows = ["trial\tstimulus\tsession"]
        rows += [f"{t}\t{s}\t{1 + t // 7}" for t, s in enumerate(order)]
        (root / "trials" / f"{subject}.tsv").write_text("\n".join(rows) + "\n")
        (root / "responses" / subject).mkdir(parents=True)
        np.save(root / "responses" / subject / "betas.npy", rng.normal(size=(len(order), n_vox)))
        hemi = ["L"] * (n_vox // 2) + ["R"] * (n_vox - n_vox // 2)
        (root / "voxels" / f"{subject}.tsv").write_text(
            "hemisphere\troi\n" + "".join(f"{h}\tV1\n" for h in hemi)
        )
    return root


def test_reads_layout(tmp_path):
    ds = open_dataset(make_trials(tmp_path / "d"), "trials")
    assert ds.kind == "trials"
    assert ds.stimuli == [f"i{k}" for k in range(7)]
    assert ds.test_stimuli == ["i5", "i6"]
    assert ds.train_stimuli == [f"i{k}" for k in range(5)]
    assert ds.captions["i1"] == ["a photo of thing 1", "another view of thing 1"]
    assert ds.categories["i3"] == "c1"
    trials = ds.trials("s1")
    assert list(trials["stimulus"][:3]) == ["i0", "i1", "i2"]
    assert list(trials["session"][[0, 13]]) == ["1", "2"]
    manifest = ds.validate(["s1"])
    assert manifest["subjects"]["s1"]["n_trials"] == 14
    assert manifest["subjects"]["s1"]["max_repeats"] == 2
    assert ds.betas("s1").shape == (14, 6)
    assert ds.subjects == ["s1"]


def test_test_stimuli_from_file(tmp_path):
    root = make_trials(tmp_path / "d")
    (root / "shared.txt").write_text("i6\ni4\n")
    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    meta["test_stimuli"] = "shared.txt"
    (root / "dataset.yaml").write_text(yaml.safe_dump(meta))
    assert open_dataset(root, "trials").test_stimuli == ["i4", "i6"]


def test_trial_count_differs_from_betas(tmp_path):
    root = make_trials(tmp_path / "d")
    path = root / "responses" / "s1" / "betas.npy"
    np.save(path, np.load(path)[:10])
    with pytest.raises(InputError, match="14 trials") as err:
        open_dataset(root, "trials").validate(["s1"])
    assert err.value.path == str(path)


def test_unknown_stimulus(tmp_path):
    root = make_trials(tmp_path / "d")
    path = root / "trials" / "s1.tsv"
    path.write_text(path.read_text().replace("\ti3\t", "\tnope\t", 1))
    with pytest.raises(InputError, match="unknown stimulus id.*nope") as err:
        open_dataset(root, "trials").validate(["s1"])
    assert err.value.path == str(path)


def test_test_stimulus_without_caption(tmp_path):
    root = make_trials(tmp_path / "d", test=("i5", "zz"))
    with pytest.raises(InputError, match="no caption") as err:
        open_dataset(root, "trials")
    assert err.value.path == str(root / "dataset.yaml")


def test_stimulus_without_category(tmp_path):
    root = make_trials(tmp_path / "d")
    path = root / "stimuli" / "categories.tsv"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(InputError, match="no category") as err:
        open_dataset(root, "trials").validate(["s1"])
    assert err.value.path == str(path)


def test_voxel_count_mismatch(tmp_path):
    root = make_trials(tmp_path / "d")
    path = root / "voxels" / "s1.tsv"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(InputError, match="6 voxels but") as err:
        open_dataset(root, "trials").validate(["s1"])
    assert err.value.path == str(root / "responses" / "s1" / "betas.npy")


def test_missing_caption_column(tmp_path):
    root = make_trials(tmp_path / "d")
    path = root / "stimuli" / "captions.tsv"
    path.write_text(path.read_text().replace("caption", "text", 1))
    with pytest.raises(InputError, match="missing column.*caption") as err:
        open_dataset(root, "trials")
    assert err.value.path == str(path)


def test_trial_numbers_out_of_order(tmp_path):
    root = make_trials(tmp_path / "d")
    path = root / "trials" / "s1.tsv"
    lines = path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="betas rows") as err:
        open_dataset(root, "trials").validate(["s1"])
    assert err.value.path == str(path)
