"""Stimulus timing: the words of a story and when they were heard."""

from __future__ import annotations

import csv
import json
import re
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


def _words_from_lists(path: Path, words, onsets, offsets, what: str) -> Words:
    """Build :class:`Words` from parsed lists, checking the timings like the native reader."""
    if not words:
        raise InputError(path, f"no words in {what}")
    on = np.asarray(onsets, dtype=float)
    off = np.asarray(offsets, dtype=float)
    if not (np.all(np.isfinite(on)) and np.all(np.isfinite(off))):
        raise InputError(path, f"{what}: onsets and offsets must be finite numbers")
    if np.any(on < 0):
        raise InputError(path, f"{what}: negative onset times")
    bad = np.flatnonzero(off < on)
    if bad.size:
        raise InputError(
            path, f"{what}: word {bad[0] + 1} ({words[bad[0]]!r}) ends before it starts"
        )
    back = np.flatnonzero(np.diff(on) < 0)
    if back.size:
        raise InputError(path, f"{what}: onsets go back in time at word {back[0] + 2}")
    return Words(words=list(words), onsets=on, offsets=off)


# -- Praat TextGrid (LeBel et al. 2023) ------------------------------------------------------
#: Interval labels of the LeBel et al. TextGrids that are not words (compared lower-cased,
#: with surrounding braces removed: ``{SP}`` is ``sp``). Any label wholly in braces is dropped
#: too (the annotations mark non-speech events that way).
TEXTGRID_NON_WORDS = frozenset(
    ["sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp", "cg", "ig", "sl"]
)
#: Tier names taken as the word tier (lower-cased).
WORD_TIER_NAMES = ("word", "words")

_TEXTGRID_TOKEN = re.compile(
    r'"((?:[^"]|"")*)"'  # a quoted string ("" escapes a quote)
    r"|\[\s*\d*\s*\]"  # an index such as item [1] or item []: dropped
    r"|(<exists>|<absent>)"  # a flag
    r"|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"  # a number
)


def _read_text(path: Path) -> str:
    """Read a Praat text file: UTF-16 (with BOM) or UTF-8, falling back to Latin-1."""
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _textgrid_tokens(text: str) -> list:
    """Values of a TextGrid in file order (strings, floats, flags), long or short format.

    The long ("text") format labels each value (``xmin = 0``); the short format lists the
    values alone. Dropping labels and ``[n]`` indices leaves the same value stream for both.
    """
    tokens = []
    for match in _TEXTGRID_TOKEN.finditer(text):
        string, flag, number = match.groups()
        if string is not None:
            tokens.append(string.replace('""', '"'))
        elif flag is not None:
            tokens.append(flag)
        elif number is not None:
            tokens.append(float(number))
    return tokens


def read_textgrid(path: str | Path) -> dict[str, list[tuple[float, float, str]]]:
    """Read the interval tiers of a Praat TextGrid (long or short text format).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict
        Tier name -> list of ``(xmin, xmax, text)`` intervals (point tiers give
        ``(time, time, mark)``), in file order.

    Raises
    ------
    InputError
        If the file is missing or is not a TextGrid in a text format.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "TextGrid file not found")
    tokens = _textgrid_tokens(_read_text(path))
    pos = 0

    def take(kind, what):
        nonlocal pos
        if pos >= len(tokens):
            raise InputError(path, f"TextGrid ends early (expected {what})")
        value = tokens[pos]
        if kind is float and not isinstance(value, float):
            raise InputError(
                path, f"not a valid TextGrid: expected a number for {what}, found {value!r}"
            )
        if kind is str and not isinstance(value, str):
            raise InputError(
                path, f"not a valid TextGrid: expected text for {what}, found {value!r}"
            )
        pos += 1
        return value

    if tokens[:2] != ["ooTextFile", "TextGrid"]:
        raise InputError(
            path,
            'not a Praat TextGrid in text format (expected File type = "ooTextFile", '
            'Object class = "TextGrid")',
        )
    pos = 2
    take(float, "xmin")
    take(float, "xmax")
    if pos < len(tokens) and tokens[pos] in ("<exists>", "<absent>"):
        if tokens[pos] == "<absent>":
            return {}
        pos += 1
    n_tiers = int(take(float, "the number of tiers"))
    tiers: dict[str, list[tuple[float, float, str]]] = {}
    for _ in range(n_tiers):
        kind = take(str, "a tier class")
        name = take(str, "a tier name")
        take(float, "tier xmin")
        take(float, "tier xmax")
        n = int(take(float, "the number of intervals"))
        items = []
        for _ in range(n):
            if kind == "IntervalTier":
                start, stop = take(float, "interval xmin"), take(float, "interval xmax")
                items.append((start, stop, take(str, "interval text")))
            elif kind == "TextTier":
                time = take(float, "point time")
                items.append((time, time, take(str, "point mark")))
            else:
                raise InputError(path, f"unknown tier class {kind!r}")
        tiers[name] = items
    return tiers


def is_textgrid_word(text: str) -> bool:
    """Whether an interval label is a spoken word (not silence, breath, empty ...)."""
    label = text.strip()
    if not label:
        return False
    if label.startswith("{") and label.endswith("}"):
        return False
    return label.lower() not in TEXTGRID_NON_WORDS


def read_textgrid_words(path: str | Path, tier: str | None = None) -> Words:
    """The words of a TextGrid's word tier, non-words and empty intervals dropped.

    Parameters
    ----------
    path : str or Path
    tier : str, optional
        Name of the word tier; default the tier named ``word`` or ``words`` (any case).

    Returns
    -------
    Words
        Onsets/offsets are the interval bounds; a word's time is their midpoint.

    Raises
    ------
    InputError
        If the file has no word tier, or that tier has no words.
    """
    path = Path(path)
    tiers = read_textgrid(path)
    if tier is not None:
        chosen = tier if tier in tiers else None
    else:
        chosen = next((t for t in tiers if t.strip().lower() in WORD_TIER_NAMES), None)
    if chosen is None:
        wanted = repr(tier) if tier else "named 'word' or 'words'"
        raise InputError(path, f"no word tier ({wanted}); tiers found: {sorted(tiers)}")
    kept = [(a, b, t.strip()) for a, b, t in tiers[chosen] if is_textgrid_word(t)]
    return _words_from_lists(
        path,
        [t for *_, t in kept],
        [a for a, *_ in kept],
        [b for _, b, _ in kept],
        f"tier {chosen!r}",
    )


# -- Gentle forced alignment (Narratives) ----------------------------------------------------
def read_gentle_alignment(path: str | Path) -> tuple[Words, int]:
    """Words of a Gentle ``align.json``, keeping those aligned to the audio.

    Parameters
    ----------
    path : str or Path
        ``stimuli/gentle/<story>/align.json`` of the Narratives dataset.

    Returns
    -------
    words : Words
        Words whose ``case`` is ``"success"`` (times ``start``/``end`` in seconds).
    n_skipped : int
        Words Gentle could not align (``not-found-in-audio`` ...), left out.

    Raises
    ------
    InputError
        If the file is missing, not JSON, has no ``words`` list or no aligned word.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "Gentle alignment file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({exc})") from exc
    entries = data.get("words") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InputError(path, "needs a `words` list (Gentle align.json format)")
    words, onsets, offsets, skipped = [], [], [], 0
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(path, f"words[{i}] is not an object")
        if entry.get("case") != "success" or "start" not in entry or "end" not in entry:
            skipped += 1
            continue
        word = str(entry.get("word", "")).strip()
        if not word:
            skipped += 1
            continue
        try:
            on, off = float(entry["start"]), float(entry["end"])
        except (TypeError, ValueError) as exc:
            raise InputError(path, f"words[{i}]: start/end are not numbers ({exc})") from exc
        words.append(word)
        onsets.append(on)
        offsets.append(off)
    return _words_from_lists(path, words, onsets, offsets, "the aligned words"), skipped


# -- Le Petit Prince word annotation ---------------------------------------------------------
#: Accepted column names (lower-cased) of the Le Petit Prince word table.
LPP_COLUMNS = {
    "word": ("word", "words", "token", "lemma_word"),
    "onset": ("onset", "onsets", "start", "onset_s", "tmin"),
    "offset": ("offset", "offsets", "end", "stop", "offset_s", "tmax"),
    "section": ("section", "run", "section_number", "run_number", "section_id", "block"),
}


def read_run_annotation(path: str | Path) -> dict[int, Words]:
    """Read a word table with a section/run column (``lppEN_word_information.csv``).

    Parameters
    ----------
    path : str or Path
        A comma- or tab-separated table with a header; the columns are matched case-
        insensitively against :data:`LPP_COLUMNS` (``word``, ``onset``, ``offset`` and
        ``section`` or ``run``); other columns are ignored.

    Returns
    -------
    dict
        Section number -> :class:`Words`, times in seconds from that section's run start.

    Raises
    ------
    InputError
        If a column is missing (the message lists the accepted names and the columns found),
        or a value is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "word annotation file not found")
    text = path.read_text(encoding="utf-8-sig")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    if not rows:
        raise InputError(path, "empty file")
    header = [h.strip().lower() for h in rows[0]]
    idx = {}
    for key, names in LPP_COLUMNS.items():
        found = next((header.index(n) for n in names if n in header), None)
        if found is None:
            raise InputError(
                path,
                f"no {key} column: accepted names {list(names)}; found columns {rows[0]}",
            )
        idx[key] = found
    runs: dict[int, tuple[list, list, list]] = {}
    for lineno, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        try:
            word = cells[idx["word"]].strip()
            on, off = float(cells[idx["onset"]]), float(cells[idx["offset"]])
            section = int(float(cells[idx["section"]]))
        except (IndexError, ValueError) as exc:
            raise InputError(path, f"line {lineno}: bad word/onset/offset/section ({exc})") from exc
        if not word:
            continue
        lists = runs.setdefault(section, ([], [], []))
        lists[0].append(word)
        lists[1].append(on)
        lists[2].append(off)
    if not runs:
        raise InputError(path, "no words")
    return {
        sec: _words_from_lists(path, w, on, off, f"section {sec}")
        for sec, (w, on, off) in sorted(runs.items())
    }
