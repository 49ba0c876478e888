"""ROI membership (voxel table, atlas, masks) and per-ROI scores, against brute force."""

import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from lmbrain import roi
from lmbrain.errors import InputError
from lmbrain.geometry import VolumeGeometry


def geometry():
    mask = np.zeros((4, 3, 2), dtype=bool)
    mask[[0, 0, 1, 2, 3, 3], [0, 2, 1, 0, 1, 2], [1, 0, 1, 0, 0, 1]] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-4.0, 0.0, 0.0]
    return VolumeGeometry(mask=mask, affine=affine)


def test_rois_from_labels_skips_empty():
    got = roi.rois_from_labels(["AC", "", "STS", "AC"])
    assert list(got) == ["AC", "STS"]
    np.testing.assert_array_equal(got["AC"], [True, False, False, True])


def test_atlas_membership_matches_a_loop_over_mask_voxels(tmp_path):
    geo = geometry()
    atlas = np.zeros(geo.mask.shape, dtype=np.int16)
    atlas[0, 0, 1] = 3
    atlas[1, 1, 1] = 3
    atlas[2, 0, 0] = 5
    atlas[3, 1, 0] = 7
    atlas[3, 2, 1] = 0  # background inside the mask
    atlas[1, 0, 0] = 9  # outside the mask: unlisted label is fine there
    nib.save(nib.Nifti1Image(atlas, geo.affine), tmp_path / "atlas.nii.gz")
    (tmp_path / "labels.tsv").write_text("index\tname\n3\tAC\n5\tIFG\n7\tAC\n8\tAG\n")
    got = roi.rois_from_atlas(geo, tmp_path / "atlas.nii.gz", tmp_path / "labels.tsv")
    names = {3: "AC", 5: "IFG", 7: "AC"}
    want: dict[str, list[bool]] = {}
    cols = [tuple(ijk) for ijk in np.argwhere(geo.mask)]  # brute force, C order
    for name in ["AC", "IFG"]:
        want[name] = [names.get(int(atlas[c]), "") == name for c in cols]
    assert list(got) == ["AC", "IFG"]  # AG has no voxel
    for name in want:
        assert got[name].tolist() == want[name]


def test_atlas_errors_name_the_file(tmp_path):
    geo = geometry()
    (tmp_path / "labels.tsv").write_text("index\tname\n1\tAC\n")
    nib.save(nib.Nifti1Image(np.ones((4, 3, 3), np.int16), geo.affine), tmp_path / "a.nii.gz")
    with pytest.raises(InputError, match=r"a\.nii\.gz: shape \(4, 3, 3\) does not match"):
        roi.rois_from_atlas(geo, tmp_path / "a.nii.gz", tmp_path / "labels.tsv")
    nib.save(nib.Nifti1Image(np.full((4, 3, 2), 2, np.int16), geo.affine), tmp_path / "a.nii.gz")
    with pytest.raises(InputError, match=r"a\.nii\.gz: labels \[2\] are not in"):
        roi.rois_from_atlas(geo, tmp_path / "a.nii.gz", tmp_path / "labels.tsv")
    nib.save(nib.Nifti1Image(np.ones((4, 3, 2), np.int16), np.eye(4)), tmp_path / "a.nii.gz")
    with pytest.raises(InputError, match="affine differs"):
        roi.rois_from_atlas(geo, tmp_path / "a.nii.gz", tmp_path / "labels.tsv")
    (tmp_path / "bad.tsv").write_text("id\tlabel\n1\tAC\n")
    with pytest.raises(InputError, match=r"bad\.tsv: needs .* `index` and `name`"):
        roi.rois_from_atlas(geo, tmp_path / "a.nii.gz", tmp_path / "bad.tsv")
    with pytest.raises(InputError, match="needs volume data"):
        roi.rois_from_atlas(None, tmp_path / "a.nii.gz", tmp_path / "labels.tsv")


def test_masks_may_overlap(tmp_path):
    geo = geometry()
    a = np.zeros(geo.mask.shape, np.uint8)
    a[0] = 1
    b = np.zeros(geo.mask.shape, np.uint8)
    b[:2] = 1
    nib.save(nib.Nifti1Image(a, geo.affine), tmp_path / "a.nii.gz")
    nib.save(nib.Nifti1Image(b, geo.affine), tmp_path / "b.nii.gz")
    got = roi.rois_from_masks(geo, {"B": tmp_path / "b.nii.gz", "A": tmp_path / "a.nii.gz"})
    i = np.argwhere(geo.mask)[:, 0]
    assert list(got) == ["A", "B"]
    np.testing.assert_array_equal(got["A"], i == 0)
    np.testing.assert_array_equal(got["B"], i <= 1)


class FakeDataset:
    def __init__(self, labels, geo=None):
        self.labels, self.geo = labels, geo

    def voxels(self, subject):
        return {"hemisphere": np.array(["L"] * len(self.labels)), "roi": np.array(self.labels)}

    def geometry(self, subject):
        return self.geo


def test_subject_rois_config_replaces_table_and_formats_subject(tmp_path):
    geo = geometry()
    ds = FakeDataset(["X"] * 6, geo)
    assert list(roi.subject_rois(ds, "s1", {})) == ["X"]
    m = np.zeros(geo.mask.shape, np.uint8)
    m[3] = 1
    nib.save(nib.Nifti1Image(m, geo.affine), tmp_path / "s1_m.nii.gz")
    got = roi.subject_rois(ds, "s1", {"roi_masks": {"M": str(tmp_path / "{subject}_m.nii.gz")}})
    assert list(got) == ["M"] and got["M"].sum() == 2


def test_roi_scores_against_brute_force():
    rng = np.random.default_rng(0)
    n = 40
    r = rng.normal(size=n)
    r[[3, 7]] = np.nan
    r_norm = np.where(rng.uniform(size=n) < 0.3, np.nan, rng.normal(size=n))
    hemi = rng.choice(["L", "R"], size=n)
    labels = rng.choice(["A", "B", ""], size=n)
    rows = roi.roi_scores(
        {"r": r, "r_norm": r_norm, "hemisphere": hemi}, roi.rois_from_labels(labels)
    )
    assert [(x["roi"], x["hemisphere"]) for x in rows] == [
        (a, h) for a in "AB" for h in ("L", "R", "both")
    ]
    for row in rows:
        rs, norms = [], []
        count = 0
        for v in range(n):  # brute force loop over voxels
            if labels[v] != row["roi"] or (
                row["hemisphere"] != "both" and hemi[v] != row["hemisphere"]
            ):
                continue
            count += 1
            if not math.isnan(r[v]):
                rs.append(r[v])
            if not math.isnan(r_norm[v]):
                norms.append(r_norm[v])
        assert row["n_voxels"] == count and row["n_voxels_ceiling"] == len(norms)
        assert row["mean_r"] == pytest.approx(sum(rs) / len(rs))
        assert row["mean_r_norm"] == pytest.approx(sum(norms) / len(norms))


def test_roi_scores_nan_when_empty():
    rows = roi.roi_scores(
        {"r": np.array([np.nan, 1.0]), "hemisphere": np.array(["L", "R"])},
        {"A": np.array([True, False])},
    )
    assert rows[0]["n_voxels"] == 1 and math.isnan(rows[0]["mean_r"])
    assert rows[1]["n_voxels"] == 0 and math.isnan(rows[1]["mean_r"])
    assert math.isnan(rows[2]["mean_r_norm"])


def test_roi_table_one_row_per_fit_roi_and_hemisphere():
    scores = pd.DataFrame(
        {
            "dataset": "d",
            "subject": ["s2", "s1", "s1"],
            "model": ["m", "m", "m"],
            "family": "f",
            "untrained": False,
            "n_params": 10,
            "layer": [1, 2, 1],
            "depth": [0.5, 1.0, 0.5],
            "train_fraction": 1.0,
            "fit_path": ["p3", "p2", "p1"],
        }
    )
    fits = {
        "p1": {"r": np.array([0.1, 0.2, 0.3]), "hemisphere": np.array(["L", "R", "R"])},
        "p2": {"r": np.array([0.4, 0.5, 0.6]), "hemisphere": np.array(["L", "R", "R"])},
        "p3": {"r": np.array([0.7, 0.8]), "hemisphere": np.array(["L", "R"])},
    }
    rois = {"s1": {"A": np.array([True, False, True])}, "s2": {}}
    table = roi.roi_table(scores, rois, load_voxels=fits.__getitem__)
    assert list(table.columns) == list(roi.ROI_COLUMNS)
    assert table[["subject", "layer", "hemisphere"]].values.tolist() == [
        ["s1", 1, "L"], ["s1", 1, "R"], ["s1", 1, "both"],
        ["s1", 2, "L"], ["s1", 2, "R"], ["s1", 2, "both"],
    ]  # fmt: skip
    np.testing.assert_allclose(table["mean_r"], [0.1, 0.3, 0.2, 0.4, 0.6, 0.5])
    with pytest.raises(InputError, match="p[12]: has 3 voxels but subject s1"):
        roi.roi_table(scores, {"s1": {"A": np.ones(2, bool)}}, load_voxels=fits.__getitem__)


def test_config_names_atlas_and_masks():
    from lmbrain.config import validate_config
    from lmbrain.errors import ConfigError

    spec = {"path": "/p", "roi_atlas": {"image": "a.nii.gz", "labels": "l.tsv"}}
    cfg = validate_config({"datasets": {"x": spec}, "models": [{"model": "m"}]})
    assert cfg["datasets"]["x"]["roi_atlas"] == {"image": "a.nii.gz", "labels": "l.tsv"}
    bad = {"path": "/p", "roi_atlas": {"image": "a.nii.gz"}}
    with pytest.raises(ConfigError, match="datasets.x.roi_atlas.*'labels'"):
        validate_config({"datasets": {"x": bad}, "models": [{"model": "m"}]})
