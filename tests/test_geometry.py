"""The geometry contract between dataset adapters and brain maps."""

import numpy as np

from lmbrain.geometry import SurfaceGeometry, VolumeGeometry, hemisphere_from_x


def test_volume_columns_follow_the_mask_in_c_order_and_x_gives_the_hemisphere():
    mask = np.zeros((4, 3, 2), dtype=bool)
    mask[0, 1, 1] = mask[3, 0, 0] = mask[1, 2, 0] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-4.0, 0.0, 0.0]  # voxel i=0,1 lie at x<0, i=2,3 at x>=0
    geo = VolumeGeometry(mask=mask, affine=affine)
    assert geo.n_voxels == 3
    # brute force: loop in C order over the mask
    expected = [
        (i * 2 - 4, j * 2, k * 2)
        for i in range(4)
        for j in range(3)
        for k in range(2)
        if mask[i, j, k]
    ]
    np.testing.assert_allclose(geo.world_coordinates(), np.array(expected, dtype=float))
    assert list(geo.hemispheres()) == ["L", "L", "R"]


def test_surface_and_x_rule():
    geo = SurfaceGeometry(
        mesh="fsaverage5",
        hemisphere=np.array(["L", "R", "R"]),
        vertex=np.array([0, 5, 7]),
        n_vertices={"L": 10242, "R": 10242},
    )
    assert geo.n_voxels == 3 and list(geo.hemispheres()) == ["L", "R", "R"]
    assert list(hemisphere_from_x([-0.5, 0.0, 3.0])) == ["L", "R", "R"]
