"""The ridge penalty grid of a configuration (``fitting.alphas``).

Its own module, with nothing but numpy, so that the configuration check
(:mod:`lmbrain.config`, run when the workflow starts) and the fits
(:mod:`lmbrain.fitting`, which re-exports it) read the grid the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lmbrain.errors import ConfigError


def alpha_grid(spec: Sequence[float] | Mapping, key: str = "alphas") -> np.ndarray:
    """Ridge penalty grid from a configuration value.

    Parameters
    ----------
    spec : list of float or dict
        Either explicit values, or ``{"logspace": [start_exp, stop_exp, n]}``
        meaning ``numpy.logspace(start_exp, stop_exp, n)``.
    key : str, default "alphas"
        Configuration key named in error messages.

    Returns
    -------
    numpy.ndarray of float64
        Positive, finite values.

    Raises
    ------
    ConfigError
        If the spec is malformed or a value is not positive and finite.
    """
    if isinstance(spec, Mapping):
        if set(spec) != {"logspace"} or len(spec["logspace"]) != 3:
            raise ConfigError(key, "expected a list of numbers or {logspace: [start, stop, n]}")
        start, stop, n = spec["logspace"]
        if int(n) != n or n < 1:
            raise ConfigError(key, f"logspace count must be a positive integer, got {n}")
        grid = np.logspace(float(start), float(stop), int(n))
    else:
        try:
            grid = np.asarray(list(spec), dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ConfigError(key, f"expected a list of numbers: {err}") from err
    if grid.ndim != 1 or grid.size == 0:
        raise ConfigError(key, "the alpha grid is empty")
    if not np.all(np.isfinite(grid) & (grid > 0)):
        raise ConfigError(key, f"alphas must be positive and finite, got {grid.tolist()}")
    return grid
