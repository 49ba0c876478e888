"""Where each response column lives in the brain: the contract between adapters and maps.

A dataset adapter's ``geometry(subject)`` returns one of

- :class:`VolumeGeometry`: the columns of the responses are the voxels of a boolean
  ``mask`` (3-D, in the space of the subject's images) in C order, i.e. ``volume[mask]``;
- :class:`SurfaceGeometry`: each column is one vertex of a named surface mesh
  (``fsaverage5`` ...) in one hemisphere;
- ``None``: no geometry is known (scores are written as plain vectors).

Brain maps (:mod:`lmbrain.brainmaps`) write per-voxel scores back into that space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HEMISPHERES = ("L", "R")


@dataclass(frozen=True)
class VolumeGeometry:
    """Voxels of a 3-D mask.

    Parameters
    ----------
    mask : numpy.ndarray of shape (nx, ny, nz), bool
        Column ``j`` of the responses is the ``j``-th True voxel of ``mask`` in C order
        (``np.flatnonzero(mask)``).
    affine : numpy.ndarray of shape (4, 4)
        Voxel indices to world (scanner / MNI) millimetres, as in the NIfTI header.
    """

    mask: np.ndarray
    affine: np.ndarray

    @property
    def n_voxels(self) -> int:
        return int(np.count_nonzero(self.mask))

    def world_coordinates(self) -> np.ndarray:
        """(n_voxels, 3) world coordinates (mm) of the mask's voxels, in column order."""
        ijk = np.argwhere(self.mask)  # C order, the same as np.flatnonzero
        return ijk @ np.asarray(self.affine)[:3, :3].T + np.asarray(self.affine)[:3, 3]

    def hemispheres(self) -> np.ndarray:
        """'L' where the world x coordinate is negative (RAS+ convention), else 'R'."""
        return hemisphere_from_x(self.world_coordinates()[:, 0])


@dataclass(frozen=True)
class SurfaceGeometry:
    """Vertices of a surface mesh, both hemispheres concatenated in column order.

    Parameters
    ----------
    mesh : str
        Mesh name, e.g. ``"fsaverage5"`` (10,242 vertices per hemisphere), ``"fsaverage6"``,
        ``"fsaverage"``.
    hemisphere : numpy.ndarray of shape (n_columns,), str
        ``'L'`` or ``'R'`` per column.
    vertex : numpy.ndarray of shape (n_columns,), int
        Vertex index within its hemisphere's mesh, per column.
    n_vertices : dict
        Vertices per hemisphere of the full mesh, e.g. ``{"L": 10242, "R": 10242}``.
    """

    mesh: str
    hemisphere: np.ndarray
    vertex: np.ndarray
    n_vertices: dict

    @property
    def n_voxels(self) -> int:
        return int(len(self.vertex))

    def hemispheres(self) -> np.ndarray:
        return np.asarray(self.hemisphere)


def hemisphere_from_x(x: np.ndarray) -> np.ndarray:
    """Hemisphere labels from world x coordinates: ``'L'`` where ``x < 0``, else ``'R'``.

    Parameters
    ----------
    x : array-like of float
        World (RAS+) x coordinates in millimetres.

    Returns
    -------
    numpy.ndarray of str
    """
    return np.where(np.asarray(x, dtype=float) < 0, "L", "R")
