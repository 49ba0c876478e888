"""Searchlight RSA against brute force and a planted cluster.

- sphere membership and the in-grid sphere size against a brute-force distance check on an
  oblique, anisotropic affine;
- the batched map against a per-centre loop over ``lmbrain.rsa.rdm`` and scipy correlations;
- a planted cluster whose response geometry is the model's: the map is 1 at the cluster's
  centre, high inside it and about 0 far from it.
"""

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from lmbrain import searchlight as sl
from lmbrain.geometry import VolumeGeometry
from lmbrain.rsa import rdm

TOL = 1e-6  # voxels on the sphere's surface are inside, up to rounding of the affine


def oblique_affine():
    rot = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))[0]
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.8, 2.0, 2.5])
    affine[:3, 3] = [-40.0, 12.0, 7.5]
    return affine


def test_sphere_members_equal_brute_force_distances():
    rng = np.random.default_rng(0)
    mask = rng.random((9, 8, 7)) < 0.6
    coords = VolumeGeometry(mask=mask, affine=oblique_affine()).world_coordinates()
    for radius in (2.0, 4.3, 6.0):
        seen = 0
        for centres, members in sl.iter_spheres(coords, radius, chunk=50):
            for c, m in zip(centres, members, strict=True):
                dist = np.linalg.norm(coords - coords[c], axis=1)
                np.testing.assert_array_equal(m, np.flatnonzero(dist <= radius + TOL))
                seen += 1
        assert seen == len(coords)


def test_sphere_size_counts_grid_voxels():
    affine = oblique_affine()
    grid = np.ones((15, 15, 15), dtype=bool)
    coords = VolumeGeometry(mask=grid, affine=affine).world_coordinates()
    centre = coords[np.ravel_multi_index((7, 7, 7), grid.shape)]
    for radius in (2.0, 4.3, 6.0):
        want = int(np.sum(np.linalg.norm(coords - centre, axis=1) <= radius + TOL))
        assert sl.sphere_size(affine, radius) == want
    # 1 mm isotropic, radius 1: the centre and its 6 face neighbours
    assert sl.sphere_size(np.eye(4), 1.0) == 7


@pytest.mark.parametrize("comparison", ["pearson", "spearman"])
def test_map_equals_per_centre_loop(comparison):
    rng = np.random.default_rng(2)
    mask = rng.random((6, 6, 5)) < 0.7
    geometry = VolumeGeometry(mask=mask, affine=oblique_affine())
    coords = geometry.world_coordinates()
    patterns = rng.standard_normal((9, len(coords)))
    patterns[:, 3] = np.nan  # an unusable voxel is left out of every sphere
    models = {"a": rdm(rng.standard_normal((9, 4))), "b": rdm(rng.standard_normal((9, 2)))}
    got = sl.searchlight_rsa(patterns, coords, models, 4.0, comparison, chunk=7)
    corr = pearsonr if comparison == "pearson" else spearmanr
    usable = np.flatnonzero(np.isfinite(patterns).all(0))
    for c in range(len(coords)):
        dist = np.linalg.norm(coords[usable] - coords[c], axis=1)
        members = usable[dist <= 4.0 + TOL]
        assert got["n_voxels"][c] == len(members)
        for name, model in models.items():
            want = corr(rdm(patterns[:, members]), model)[0] if len(members) > 1 else np.nan
            np.testing.assert_allclose(got[name][c], want, atol=1e-5, equal_nan=True)


def test_min_fraction_blanks_centres_at_the_mask_edge():
    mask = np.ones((7, 7, 7), dtype=bool)
    geometry = VolumeGeometry(mask=mask, affine=np.eye(4))
    coords = geometry.world_coordinates()
    patterns = np.random.default_rng(3).standard_normal((6, len(coords)))
    model = {"m": rdm(np.random.default_rng(4).standard_normal((6, 3)))}
    got = sl.searchlight_rsa(patterns, coords, model, 2.0, min_fraction=1.0, affine=np.eye(4))
    flat = got["m"].reshape(mask.shape)
    assert np.isnan(flat[0, 0, 0]) and np.isnan(flat[1, 3, 3])  # sphere leaves the box
    assert np.isfinite(flat[2:5, 2:5, 2:5]).all()  # sphere inside the box


def test_planted_cluster_is_found():
    """Cluster voxels = the model's patterns (no noise); every other voxel is noise."""
    rng = np.random.default_rng(5)
    shape, radius, n_stimuli = (14, 14, 14), 4.0, 30
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    mask = np.ones(shape, dtype=bool)
    coords = VolumeGeometry(mask=mask, affine=affine).world_coordinates()
    centre = coords[np.ravel_multi_index((4, 4, 4), shape)]
    cluster = np.linalg.norm(coords - centre, axis=1) <= radius
    patterns = rng.standard_normal((n_stimuli, len(coords)))
    planted = 3.0 * rng.standard_normal((n_stimuli, int(cluster.sum())))
    patterns[:, cluster] = planted
    model = {"model": rdm(planted)}  # the cluster's response geometry
    got = sl.searchlight_rsa(patterns, coords, model, radius, "pearson")["model"]
    at_centre = got[np.ravel_multi_index((4, 4, 4), shape)]
    np.testing.assert_allclose(at_centre, 1.0, atol=1e-5)
    assert np.nanmean(got[cluster]) > 0.5
    far = np.linalg.norm(coords - centre, axis=1) > 2 * radius + 1e-6  # no sphere overlap
    assert abs(np.nanmean(got[far])) < 0.03
    assert np.nanpercentile(np.abs(got[far]), 99) < 0.25
    assert np.nanmin(got[cluster]) > np.nanpercentile(got[far], 99)


def test_dataset_without_volume_geometry_is_refused():
    class NoGeometry:
        name, root = "demo", "/data/demo"

        def geometry(self, subject):
            return None

    from lmbrain.errors import InputError

    with pytest.raises(InputError, match="volume data"):
        sl.dataset_searchlight(NoGeometry(), "sub-01", {}, {"radius_mm": 6})


def test_nsd_subject_map_written_and_drawn(tmp_path):
    """On the NSD fixture: one volume per feature space, NaN outside the mask, then drawn."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_nsd_dataset import make_nsd

    from lmbrain.brainmaps import read_volume_map, write_volume_map
    from lmbrain.datasets import open_dataset
    from lmbrain.mapplots import plot_brain_map
    from lmbrain.sentence_features import random_features, write_stimulus_features

    root, *_ = make_nsd(tmp_path / "nsd")
    ds = open_dataset(root, "nsd")
    path = tmp_path / "random.h5"
    feats = random_features(ds.stimuli, 5, 0)
    write_stimulus_features(path, ds.stimuli, {0: feats}, {"n_layers": 1})
    models = {"random": {"path": str(path), "layers": [0], "baseline": True}}
    settings = {"radius_mm": 4.0, "min_fraction": 0.0, "comparison": "spearman"}
    values, geometry = sl.dataset_searchlight(ds, "subj01", models, settings)
    assert sorted(values) == ["n_voxels", "random_layer-0"]
    assert sl.main_measure(models) == "random_layer-0"
    paths = write_volume_map(values, geometry, tmp_path / "subj01")
    maps, affine = read_volume_map(paths["image"])
    mask = ds.mask("subj01")[0]
    np.testing.assert_array_equal(maps["random_layer-0"][mask], values["random_layer-0"])
    assert np.isnan(maps["random_layer-0"][~mask]).all()
    assert np.isfinite(values["random_layer-0"]).mean() > 0.9
    np.testing.assert_allclose(affine, geometry.affine)
    plot_brain_map("volume", paths, "subj01", tmp_path / "sl.png", "random_layer-0")
    assert (tmp_path / "sl.png").read_bytes()[:4] == b"\x89PNG"


def test_stimulus_samples_are_disjoint_and_seeded():
    sets = sl.stimulus_samples(103, 10, None, seed=4)
    assert len(sets) == 10 and all(len(s) == 10 for s in sets)
    assert len(np.unique(np.concatenate(sets))) == 100  # disjoint
    again = sl.stimulus_samples(103, 10, 3, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(again, sets[:3], strict=False))
    assert not np.array_equal(sl.stimulus_samples(103, 10, 1, seed=5)[0], sets[0])
    np.testing.assert_array_equal(sl.stimulus_samples(7, None, None, 0)[0], np.arange(7))
    with pytest.raises(ValueError, match="disjoint"):
        sl.stimulus_samples(20, 10, 3, 0)


def test_nsd_sampled_map_is_the_mean_of_the_sets(tmp_path):
    """stimuli: all, sample_size: the map is the mean of one searchlight per image set."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_nsd_dataset import make_nsd

    from lmbrain.datasets import open_dataset
    from lmbrain.sentence_features import random_features, write_stimulus_features
    from lmbrain.trial_encoding import stimulus_means, subject_responses

    root, *_ = make_nsd(tmp_path / "nsd")
    ds = open_dataset(root, "nsd")
    path = tmp_path / "random.h5"
    feats = random_features(ds.stimuli, 5, 0)
    write_stimulus_features(path, ds.stimuli, {0: feats}, {"n_layers": 1})
    models = {"random": {"path": str(path), "layers": [0]}}
    settings = {"radius_mm": 4.0, "stimuli": "all", "sample_size": 8, "n_samples": 2}
    got, geometry = sl.dataset_searchlight(ds, "subj01", models, settings, seed=1)
    data = subject_responses(ds, "subj01")
    ids, means, _ = stimulus_means(data["responses"], data["stimulus"])
    row = {s: i for i, s in enumerate(ds.stimuli)}
    f = feats[[row[s] for s in ids]]
    want = []
    for sample in sl.stimulus_samples(len(ids), 8, 2, seed=1):
        model = {"m": rdm(f[sample])}
        want.append(
            sl.searchlight_rsa(means[sample], geometry.world_coordinates(), model, 4.0)["m"]
        )
    np.testing.assert_allclose(got["random_layer-0"], np.nanmean(want, axis=0), atol=1e-6)
