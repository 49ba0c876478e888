"""Brain maps: per-voxel scores written into the subject's space and read back (nibabel)."""

import json

import nibabel as nib
import numpy as np
import pytest

from lmbrain import brainmaps
from lmbrain.errors import InputError
from lmbrain.geometry import SurfaceGeometry, VolumeGeometry


def fit_arrays(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "r": rng.uniform(-0.2, 0.8, n).astype(np.float32),
        "r2": rng.normal(size=n).astype(np.float32),
        "alpha": 10.0 ** rng.integers(0, 5, n),
        "cv_score": rng.normal(size=n),
        "cc_max": rng.uniform(0, 1, n).astype(np.float32),
        "r_norm": np.where(rng.uniform(size=n) < 0.3, np.nan, rng.normal(size=n)),
        "q": rng.uniform(0, 1, n).astype(np.float32),  # given before p: the order is fixed
        "p": rng.uniform(0, 1, n).astype(np.float32),
        "hemisphere": np.array(["L"] * (n // 2) + ["R"] * (n - n // 2)),
        "zeta": rng.normal(size=n),  # an extra per-voxel array: mapped after the known ones
    }


def volume_geometry():
    rng = np.random.default_rng(1)
    mask = rng.uniform(size=(5, 4, 3)) < 0.4
    affine = np.array([[3.0, 0, 0, -7.5], [0, 3.0, 0, -30], [0, 0, 3.0, 0], [0, 0, 0, 1]])
    return VolumeGeometry(mask=mask, affine=affine)


def test_measures_in_map_order_without_labels():
    values = brainmaps.map_measures(fit_arrays(7))
    assert list(values) == ["r", "r2", "alpha", "cv_score", "cc_max", "r_norm", "p", "q", "zeta"]
    assert all(v.dtype == np.float32 and v.shape == (7,) for v in values.values())
    with pytest.raises(ValueError, match="'r'"):
        brainmaps.map_measures({"alpha": np.ones(3)})


def test_volume_map_round_trip_matches_a_loop_over_mask_voxels(tmp_path):
    geo = volume_geometry()
    arrays = fit_arrays(geo.n_voxels)
    np.savez(tmp_path / "fit.npz", **arrays)
    paths = brainmaps.write_fit_map(tmp_path / "fit.npz", geo, tmp_path / "maps" / "m")
    assert paths == {
        "image": str(tmp_path / "maps/m.nii.gz"),
        "sidecar": str(tmp_path / "maps/m.json"),
    }
    img = nib.load(paths["image"])  # independent read with nibabel
    data = np.asarray(img.dataobj)
    names = json.loads((tmp_path / "maps/m.json").read_text())["volumes"]
    assert names == ["r", "r2", "alpha", "cv_score", "cc_max", "r_norm", "p", "q", "zeta"]
    assert data.shape == (5, 4, 3, len(names)) and data.dtype == np.float32
    np.testing.assert_allclose(img.affine, geo.affine)
    assert b"r r2 alpha" in img.header["descrip"].tobytes()
    # brute force: walk the grid in C order, the j-th mask voxel holds column j
    j = 0
    for i in range(5):
        for jj in range(4):
            for k in range(3):
                for t, name in enumerate(names):
                    got = data[i, jj, k, t]
                    if geo.mask[i, jj, k]:
                        want = np.float32(arrays[name][j])
                        assert (np.isnan(got) and np.isnan(want)) or got == want
                    else:
                        assert np.isnan(got)
                j += bool(geo.mask[i, jj, k])
    assert j == geo.n_voxels
    maps, affine = brainmaps.read_volume_map(paths["image"])
    np.testing.assert_array_equal(maps["r"][geo.mask], arrays["r"])
    np.testing.assert_allclose(affine, geo.affine)


def test_volume_map_places_left_columns_at_negative_x(tmp_path):
    geo = volume_geometry()
    values = {"r": np.where(geo.hemispheres() == "L", -1.0, 1.0)}
    brainmaps.write_volume_map(values, geo, tmp_path / "m")
    img = nib.load(tmp_path / "m.nii.gz")
    data = np.asarray(img.dataobj)[..., 0]
    for ijk in np.argwhere(geo.mask):
        x = (img.affine @ np.r_[ijk, 1.0])[0]
        assert data[tuple(ijk)] == (-1.0 if x < 0 else 1.0)


def test_surface_map_round_trip_matches_a_loop_over_columns(tmp_path):
    n_vert = {"L": 30, "R": 25}
    hemi = np.array(["R", "L", "L", "R", "L", "R", "R"])
    vertex = np.array([3, 0, 29, 24, 7, 11, 0])
    geo = SurfaceGeometry(mesh="fsaverage3x", hemisphere=hemi, vertex=vertex, n_vertices=n_vert)
    arrays = fit_arrays(7)
    np.savez(tmp_path / "fit.npz", **arrays)
    paths = brainmaps.write_fit_map(tmp_path / "fit.npz", geo, tmp_path / "m")
    assert sorted(paths) == ["L", "R"] and paths["L"].endswith("m_hemi-L.func.gii")
    for h in "LR":
        img = nib.load(paths[h])
        assert img.meta["AnatomicalStructurePrimary"] == {"L": "CortexLeft", "R": "CortexRight"}[h]
        names = [d.meta["Name"] for d in img.darrays]
        assert names == ["r", "r2", "alpha", "cv_score", "cc_max", "r_norm", "p", "q", "zeta"]
        for d in img.darrays:
            want = np.full(n_vert[h], np.nan, dtype=np.float32)
            for col in range(7):  # brute force over columns
                if hemi[col] == h:
                    want[vertex[col]] = arrays[d.meta["Name"]][col]
            np.testing.assert_array_equal(d.data, want)
        values, mesh = brainmaps.read_surface_map(paths[h])
        assert mesh == "fsaverage3x" and list(values) == names


def test_surface_map_rejects_bad_vertices():
    geo = SurfaceGeometry("m", np.array(["L", "L"]), np.array([1, 1]), {"L": 4, "R": 4})
    with pytest.raises(ValueError, match="share a vertex"):
        brainmaps.surface_images({"r": np.zeros(2)}, geo)
    geo = SurfaceGeometry("m", np.array(["L", "R"]), np.array([1, 4]), {"L": 4, "R": 4})
    with pytest.raises(ValueError, match="outside"):
        brainmaps.surface_images({"r": np.zeros(2)}, geo)


def test_vector_map_without_geometry(tmp_path):
    arrays = fit_arrays(6)
    np.savez(tmp_path / "fit.npz", **arrays)
    paths = brainmaps.write_fit_map(tmp_path / "fit.npz", None, tmp_path / "m")
    with np.load(paths["vector"]) as out:
        np.testing.assert_array_equal(out["r_norm"], arrays["r_norm"].astype(np.float32))
        np.testing.assert_array_equal(out["hemisphere"], arrays["hemisphere"])
        assert "zeta" in out.files


def test_voxel_count_must_match_the_geometry(tmp_path):
    geo = volume_geometry()
    np.savez(tmp_path / "fit.npz", **fit_arrays(geo.n_voxels + 1))
    with pytest.raises(InputError, match="fit.npz.*voxels but the subject's volume geometry"):
        brainmaps.write_fit_map(tmp_path / "fit.npz", geo, tmp_path / "m")
    assert not list(tmp_path.glob("m*"))


def test_kinds_and_paths():
    assert brainmaps.map_kind(None) == "vector"
    assert brainmaps.map_kind(volume_geometry()) == "volume"
    with pytest.raises(TypeError):
        brainmaps.map_kind("fsaverage5")
    assert brainmaps.map_paths("a/b", "surface") == {
        "L": "a/b_hemi-L.func.gii",
        "R": "a/b_hemi-R.func.gii",
    }
    with pytest.raises(ValueError, match="unknown map kind"):
        brainmaps.map_paths("a", "flat")


# --------------------------------------------------------------------------- native layout


def _native(tmp_path, n_vox=6):
    from test_native_dataset import make_native

    return make_native(tmp_path / "ds", n_vox=n_vox)


def test_native_without_mask_or_surface_has_no_geometry(tmp_path):
    from lmbrain.datasets import open_dataset

    assert open_dataset(_native(tmp_path)).geometry("s1") is None


def test_native_volume_mask_gives_columns_in_c_order(tmp_path):
    from lmbrain.datasets import open_dataset

    root = _native(tmp_path)
    mask = np.zeros((4, 2, 3), dtype=np.int16)
    mask[[0, 1, 1, 2, 3, 3], [0, 1, 0, 1, 0, 1], [2, 0, 1, 2, 0, 0]] = [1, 2, 1, 1, 7, 1]
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(mask, affine), root / "voxels" / "s1_mask.nii.gz")
    ds = open_dataset(root)
    geo = ds.geometry("s1")
    assert isinstance(geo, VolumeGeometry) and geo.n_voxels == 6
    np.testing.assert_array_equal(geo.mask, mask != 0)
    np.testing.assert_allclose(geo.affine, affine)
    ds.validate(["s1"])


def test_native_mask_with_the_wrong_voxel_count_names_the_file(tmp_path):
    from lmbrain.datasets import open_dataset

    root = _native(tmp_path)
    mask = np.zeros((3, 3, 3), dtype=np.uint8)
    mask[0, :, 0] = 1  # 3 voxels, the voxels file lists 6
    nib.save(nib.Nifti1Image(mask, np.eye(4)), root / "voxels" / "s1_mask.nii.gz")
    with pytest.raises(InputError, match=r"s1_mask\.nii\.gz: has 3 voxels .* lists 6"):
        open_dataset(root).validate(["s1"])
    (root / "voxels" / "s1_mask.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match=r"s1_mask\.nii\.gz: not a readable NIfTI"):
        open_dataset(root).geometry("s1")


def test_native_surface_from_vertex_column(tmp_path):
    import yaml

    from lmbrain.datasets import open_dataset

    root = _native(tmp_path)
    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    (root / "dataset.yaml").write_text(yaml.safe_dump({**meta, "surface": "fsaverage5"}))
    vox = root / "voxels" / "s1.tsv"
    vox.write_text(
        "hemisphere\tvertex\n"
        + "".join(f"{h}\t{v}\n" for h, v in zip("LLLRRR", [5, 0, 10241, 5, 9, 2], strict=True))
    )
    geo = open_dataset(root).geometry("s1")
    assert isinstance(geo, SurfaceGeometry) and geo.mesh == "fsaverage5"
    assert geo.n_vertices == {"L": 10242, "R": 10242}
    np.testing.assert_array_equal(geo.vertex, [5, 0, 10241, 5, 9, 2])
    assert list(geo.hemisphere) == list("LLLRRR")
    vox.write_text(
        "hemisphere\tvertex\n"
        + "".join(f"{h}\t{v}\n" for h, v in zip("LLLRRR", [5, 5, 1, 2, 3, 4], strict=True))
    )
    with pytest.raises(InputError, match=r"s1\.tsv: a vertex appears twice in hemisphere L"):
        open_dataset(root).geometry("s1")
    vox.write_text(
        "hemisphere\tvertex\n"
        + "".join(f"{h}\t{v}\n" for h, v in zip("LLLRRR", [0, 1, 2, 3, 4, 10242], strict=True))
    )
    with pytest.raises(InputError, match=r"s1\.tsv: `vertex` must lie in 0\.\.10241"):
        open_dataset(root).geometry("s1")
    vox.write_text("hemisphere\n" + "L\n" * 3 + "R\n" * 3)
    with pytest.raises(InputError, match="need a `vertex` column"):
        open_dataset(root).geometry("s1")
    (root / "dataset.yaml").write_text(yaml.safe_dump({**meta, "surface": "fsaverage9"}))
    with pytest.raises(InputError, match=r"dataset\.yaml: unknown surface 'fsaverage9'"):
        open_dataset(root).geometry("s1")


def test_demo_dataset_writes_a_mask_with_left_voxels_at_negative_x(tmp_path):
    from lmbrain.datasets import open_dataset
    from lmbrain.demo import make_demo_dataset

    root = make_demo_dataset(
        tmp_path / "demo",
        seed=1,
        n_subjects=1,
        voxels_per_hemisphere=5,
        n_repeats=2,
        stories=["01_farm", "02_fog", "03_kitchen"],
    )
    ds = open_dataset(root)
    geo = ds.geometry("sub-01")
    assert isinstance(geo, VolumeGeometry) and geo.n_voxels == 10
    # the voxel table's hemisphere labels agree with the world x of the mask voxels
    np.testing.assert_array_equal(geo.hemispheres(), ds.voxels("sub-01")["hemisphere"])
    ds.validate(["sub-01"])


def test_planned_geometry_refuses_another_form():
    """The map scripts' check: a subject whose geometry changed after planning stops the job."""
    from types import SimpleNamespace

    from lmbrain.brainmaps import planned_geometry

    no_geometry = SimpleNamespace(geometry=lambda subject: None)
    assert planned_geometry(no_geometry, "sub-01", "vector") is None
    assert planned_geometry(object(), "sub-01", "vector") is None  # dataset without geometry
    with pytest.raises(RuntimeError, match="gives vector maps, the workflow expected volume"):
        planned_geometry(no_geometry, "sub-01", "volume")
