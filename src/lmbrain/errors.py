"""Errors that name the offending file and the problem."""

from __future__ import annotations

from pathlib import Path


class LmbrainError(Exception):
    """Base class of every error lmbrain raises on bad input."""


class InputError(LmbrainError):
    """Bad input: names the file and says what is wrong with it.

    Parameters
    ----------
    path : str or Path
        The file (or folder) that is wrong.
    problem : str
        What is wrong, in words a user can act on.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(LmbrainError):
    """Bad configuration: names the key (as a dotted path) and the problem."""

    def __init__(self, key: str, problem: str, source: str | Path | None = None):
        self.key = key
        self.problem = problem
        where = f"{source}: " if source else ""
        super().__init__(f"{where}config key '{key}': {problem}")
