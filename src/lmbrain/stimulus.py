"""Stimulus timing: the words of a story and when they were heard."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmbrain.errors import InputError

WORD_COLUMNS = ("word", "onset", "offset")


@dataclass(frozen=True)
class Words:
    """The spoken words of one story with their timings (seconds from the run's start).

    Attributes
    ----------
    words : list of str
        Words in the order they were spoken.
    onsets, offsets : ndarray of float
        Start and end of each word.
    """

    words: list[str]
    onsets: np.ndarray
    offsets: np.ndarray

    @property
    def times(self) -> np.ndarray:
        """Each word's time: the midpoint of its interval (the Huth-lab convention)."""
        return (self.onsets + self.offsets) / 2.0

    @property
    def end(self) -> float:
        """Offset of the last word (the stimulus duration from the run's start)."""
        return float(self.offsets[-1])

    def __len__(self) -> int:
        return len(self.words)


def read_word_table(path: str | Path) -> Words:
    """Read a ``word onset offset`` TSV (tab-separated, with header).

    Parameters
    ----------
    path : str or Path
        The ``stimuli/<story>.tsv`` file.

    Returns
    -------
    Words

    Raises
    ------
    InputError
        If the file is missing, lacks a column, has non-numeric or negative times, an offset
        before its onset, onsets that go back in time, or no words.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "stimulus file not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise InputError(path, "empty file; expected a header 'word<TAB>onset<TAB>offset'")
    header = [h.strip() for h in lines[0].split("\t")]
    missing = [c for c in WORD_COLUMNS if c not in header]
    if missing:
        raise InputError(
            path,
            f"missing column(s) {', '.join(missing)}; found columns {header} "
            "(expected a tab-separated header 'word<TAB>onset<TAB>offset')",
        )
    idx = [header.index(c) for c in WORD_COLUMNS]
    words, onsets, offsets = [], [], []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < len(header):
            raise InputError(
                path, f"line {lineno} has {len(cells)} fields, header has {len(header)}"
            )
        word = cells[idx[0]].strip()
        try:
            on, off = float(cells[idx[1]]), float(cells[idx[2]])
        except ValueError as exc:
            raise InputError(path, f"line {lineno}: onset/offset are not numbers ({exc})") from exc
        if not word:
            raise InputError(path, f"line {lineno}: empty word")
        words.append(word)
        onsets.append(on)
        offsets.append(off)
    if not words:
        raise InputError(path, "no words")
    on = np.asarray(onsets, dtype=float)
    off = np.asarray(offsets, dtype=float)
    if not (np.all(np.isfinite(on)) and np.all(np.isfinite(off))):
        raise InputError(path, "onsets and offsets must be finite numbers")
    if np.any(on < 0):
        raise InputError(path, "negative onset times")
    bad = np.flatnonzero(off < on)
    if bad.size:
        raise InputError(path, f"offset before onset at line {bad[0] + 2}")
    back = np.flatnonzero(np.diff(on) < 0)
    if back.size:
        raise InputError(path, f"onsets go back in time at line {back[0] + 3}")
    return Words(words=words, onsets=on, offsets=off)
