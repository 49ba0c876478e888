"""The native dataset layout: reading and the errors bad files give."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from lmbrain.datasets import open_dataset
from lmbrain.errors import InputError
from lmbrain.stimulus import read_word_table


def write_story(path: Path, n_words=40, rate=2.5, start=4.0):
    lines = ["word\tonset\toffset"]
    for i in range(n_words):
        on = start + i / rate
        lines.append(f"w{i}\t{on:.3f}\t{on + 0.3:.3f}")
    path.write_text("\n".join(lines) + "\n")
    return start + (n_words - 1) / rate + 0.3


def make_native(root: Path, n_vox=6, tr=2.0, stories=("a", "b", "c", "t")):
    rng = np.random.default_rng(0)
    (root / "stimuli").mkdir(parents=True)
    (root / "responses" / "s1").mkdir(parents=True)
    (root / "voxels").mkdir()
    yaml.safe_dump(
        {"tr": tr, "trim": {"start": 1, "end": 1}, "test_stories": ["t"], "subjects": ["s1"]},
        (root / "dataset.yaml").open("w"),
    )
    for story in stories:
        end = write_story(root / "stimuli" / f"{story}.tsv")
        n_trs = int(np.ceil((end + 6) / tr))
        if story == "t":
            np.save(root / "responses" / "s1" / "t_repeats.npy", rng.normal(size=(3, n_trs, n_vox)))
        else:
            np.save(root / "responses" / "s1" / f"{story}.npy", rng.normal(size=(n_trs, n_vox)))
    hemi = ["L"] * (n_vox // 2) + ["R"] * (n_vox - n_vox // 2)
    (root / "voxels" / "s1.tsv").write_text(
        "hemisphere\troi\n" + "".join(f"{h}\tX\n" for h in hemi)
    )
    return root


def test_valid_dataset_manifest(tmp_path):
    ds = open_dataset(make_native(tmp_path / "ds"))
    manifest = ds.validate(["s1"])
    assert ds.train_stories == ["a", "b", "c"]
    assert manifest["stories"]["t"]["test"] is True
    assert manifest["subjects"]["s1"] == {"n_voxels": 6, "n_left": 3, "n_right": 3}
    target = ds.test_target("s1", "t")
    reps = np.load(tmp_path / "ds" / "responses" / "s1" / "t_repeats.npy")
    np.testing.assert_allclose(target, reps.mean(0), rtol=1e-5, atol=1e-6)


def test_word_times_are_midpoints(tmp_path):
    write_story(tmp_path / "s.tsv", n_words=3, rate=1.0, start=1.0)
    words = read_word_table(tmp_path / "s.tsv")
    np.testing.assert_allclose(words.times, [1.15, 2.15, 3.15])


def test_missing_column_names_file(tmp_path):
    root = make_native(tmp_path / "ds")
    bad = root / "stimuli" / "b.tsv"
    bad.write_text("word\tonset\nhello\t1.0\n")
    with pytest.raises(InputError) as info:
        open_dataset(root).validate(["s1"])
    assert str(bad) in str(info.value) and "offset" in str(info.value)


def test_tr_count_mismatch_names_file(tmp_path):
    root = make_native(tmp_path / "ds")
    path = root / "responses" / "s1" / "a.npy"
    np.save(path, np.zeros((5, 6)))
    with pytest.raises(InputError, match="TR count does not match") as info:
        open_dataset(root).validate(["s1"])
    assert str(path) in str(info.value)
    np.save(path, np.zeros((500, 6)))
    with pytest.raises(InputError, match="TR count does not match"):
        open_dataset(root).validate(["s1"])


def test_missing_voxels_file(tmp_path):
    root = make_native(tmp_path / "ds")
    (root / "voxels" / "s1.tsv").unlink()
    with pytest.raises(InputError, match="voxels file") as info:
        open_dataset(root).validate(["s1"])
    assert "s1.tsv" in str(info.value)


def test_voxel_count_mismatch(tmp_path):
    root = make_native(tmp_path / "ds")
    (root / "voxels" / "s1.tsv").write_text("hemisphere\nL\nR\n")
    with pytest.raises(InputError, match="6 voxels"):
        open_dataset(root).validate(["s1"])


def test_bad_hemisphere_label(tmp_path):
    root = make_native(tmp_path / "ds")
    (root / "voxels" / "s1.tsv").write_text("hemisphere\n" + "left\n" * 6)
    with pytest.raises(InputError, match="L or R"):
        open_dataset(root).voxels("s1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("word\tonset\toffset\nhi\tx\t1\n", "not numbers"),
        ("word\tonset\toffset\nhi\t2\t1\n", "offset before onset"),
        ("word\tonset\toffset\nhi\t2\t3\nho\t1\t1.5\n", "back in time"),
        ("word\tonset\toffset\n", "no words"),
    ],
)
def test_bad_word_tables(tmp_path, content, message):
    path = tmp_path / "s.tsv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_word_table(path)


# -- hardening (issue 12, point 5) -----------------------------------------------------------
def test_inf_response_names_file_and_voxel(tmp_path):
    root = make_native(tmp_path / "ds")
    path = root / "responses" / "s1" / "b.npy"
    arr = np.load(path)
    arr[3, 4] = np.inf
    np.save(path, arr)
    ds = open_dataset(root)
    for call in (lambda: ds.validate(["s1"]), lambda: ds.responses("s1", "b")):
        with pytest.raises(InputError, match="infinite") as info:
            call()
        assert str(path) in str(info.value) and "voxel=4" in str(info.value)


def test_inf_in_repeats_names_file(tmp_path):
    root = make_native(tmp_path / "ds")
    path = root / "responses" / "s1" / "t_repeats.npy"
    arr = np.load(path)
    arr[1, 2, 5] = -np.inf
    np.save(path, arr)
    with pytest.raises(InputError, match="infinite") as info:
        open_dataset(root).test_target("s1", "t")
    assert str(path) in str(info.value) and "voxel=5" in str(info.value)


def test_repeats_tr_count_differs_from_own_responses(tmp_path):
    root = make_native(tmp_path / "ds")
    reps = np.load(root / "responses" / "s1" / "t_repeats.npy")
    own = root / "responses" / "s1" / "t.npy"
    np.save(own, reps[0, :-1])
    with pytest.raises(InputError, match="repeats have") as info:
        open_dataset(root).validate(["s1"])
    msg = str(info.value)
    assert str(own) in msg and "t_repeats.npy" in msg
    np.save(own, reps[0])
    open_dataset(root).validate(["s1"])


@pytest.mark.parametrize(
    ("trim", "expect"),
    [(4, (4, 4)), ({"start": 2}, (2, 0)), (None, (0, 0)), ({"start": 1, "end": 3}, (1, 3))],
)
def test_trim_number_or_mapping(tmp_path, trim, expect):
    root = make_native(tmp_path / "ds")
    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    meta["trim"] = trim
    (root / "dataset.yaml").write_text(yaml.safe_dump(meta))
    ds = open_dataset(root)
    assert (ds.trim_start, ds.trim_end) == expect


@pytest.mark.parametrize("trim", [-1, [1, 2], {"begin": 2}, "4", 2.5, True])
def test_bad_trim_names_key(tmp_path, trim):
    from lmbrain.errors import ConfigError

    root = make_native(tmp_path / "ds")
    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    meta["trim"] = trim
    (root / "dataset.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(ConfigError, match="trim") as info:
        open_dataset(root)
    assert "dataset.yaml" in str(info.value)


@pytest.mark.parametrize("fmt", ["lebel", "lpp", "narratives"])
@pytest.mark.parametrize(("trim", "expect"), [(4, (4, 4)), ({"end": 3}, None)])
def test_adapter_trim_number(tmp_path, fmt, trim, expect):
    """Every adapter reads ``trim`` through lmbrain.datasets.base.adapter_settings."""
    from lmbrain.datasets.base import adapter_settings

    cls = {"lebel": "LebelDataset", "lpp": "LppDataset", "narratives": "NarrativesDataset"}[fmt]
    import lmbrain.datasets as lds

    defaults = getattr(lds, cls).OPTIONS
    _, start, end = adapter_settings(defaults, {"trim": trim})
    if expect is None:
        expect = (int(defaults["trim"].get("start", 0)), 3)
    assert (start, end) == expect


def test_adapter_bad_trim_is_config_error():
    from lmbrain.datasets.base import adapter_settings
    from lmbrain.errors import ConfigError

    with pytest.raises(ConfigError, match="'trim'"):
        adapter_settings({"trim": {"start": 0, "end": 0}}, {"trim": "four"})


def test_dotfiles_are_ignored(tmp_path):
    root = make_native(tmp_path / "ds")
    (root / "stimuli" / "._a.tsv").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "stimuli" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "responses" / ".DS_Store").write_bytes(b"\x00")
    (root / "responses" / ".hidden").mkdir()
    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    del meta["subjects"]
    (root / "dataset.yaml").write_text(yaml.safe_dump(meta))
    ds = open_dataset(root)
    assert ds.stories == ["a", "b", "c", "t"]
    assert ds.subjects == ["s1"]
    ds.validate(["s1"])


def test_visible_glob_skips_hidden_parts(tmp_path):
    from lmbrain.datasets.base import visible_glob

    (tmp_path / "d" / ".cache").mkdir(parents=True)
    for name in ["d/x.tsv", "d/._x.tsv", "d/.cache/y.tsv", ".top.tsv"]:
        (tmp_path / name).write_text("")
    assert visible_glob(tmp_path, "*.tsv", recursive=True) == [tmp_path / "d" / "x.tsv"]
    assert visible_glob(tmp_path / "missing", "*") == []
