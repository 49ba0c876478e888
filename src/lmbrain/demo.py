"""A simulated fMRI dataset of people listening to the packaged demo stories.

:func:`make_demo_dataset` writes a complete dataset in the native layout
(:mod:`lmbrain.datasets.native`): word timings for each story, voxel responses
for each subject (repeats for the held-out story), voxel tables, and the planted
ground truth. No language model is involved: the responses are generated from
features computed from the text alone, so that language models can be scored
against a known truth. The generative model (also in ``docs/demo_simulation.md``):

1. **Timing.** Each story is spoken at ``words_per_second`` (speech only,
   excluding pauses); word durations scale with ``0.5 + syllables`` with
   log-normal jitter; pauses follow commas/semicolons/colons/dashes
   (0.15-0.3 s) and sentence ends (0.4-0.8 s) (:func:`word_timings`). Runs
   have 9.5-10.5 s of silence before the first word and 10-15 s after the
   last; ``n_trs = ceil(run_duration / tr)``.
2. **Word features** (:func:`word_features`), from the text alone (words
   lower-cased, surrounding punctuation stripped):

   * *lexical*: word rate (1 per word), word length, log word frequency
     (add-one smoothed over all packaged stories) and a function-word
     indicator; all but the rate are centred, so they modulate the rate;
   * *prosody*: a seeded random per-word value (AR(1) across words, phi 0.8)
     standing in for the acoustic variation of speech (loudness, pitch) that
     the text does not determine: no text model can predict it;
   * *semantic*: membership in 10 hand-written categories
     (:data:`SEMANTIC_CATEGORIES`, :func:`category_matrix`);
   * *surprisal*: ``-log p(word | previous word)`` under an add-k (k = 0.1)
     bigram model fitted on all packaged stories (:func:`bigram_surprisal`).

   Semantic and surprisal features are centred and integrated over the past
   with causal exponentially weighted moving averages of time constants
   1, 4, 16 and 64 words (:data:`TIMESCALES`, :func:`ewma`): 49 features.
3. **Regressors** (:func:`story_regressors`, :func:`simulation_design`).
   Each feature is an impulse at each word's midpoint on a 0.1 s grid,
   convolved with the Glover canonical HRF (0-32 s) and sampled at the TR
   times ``k * tr + tr / 2``; each regressor is standardised over the kept
   (trimmed) TRs of all simulated stories.
4. **Voxels** (:func:`draw_voxels`). Left voxels come first, then right
   ones; each has an ROI (left: 20% AC, 30% STS, 25% IFG, 25% AG; right:
   35% AC, 35% STS, 15% IFG, 15% AG). The ROI sets the preferred timescale
   (log2 words: AC 0, STS 2, IFG 3.5, AG 4.5), shifted by +0.75 on the left
   and -0.75 on the right, plus N(0, 0.7) jitter; the weights over the four
   timescales are a Gaussian in log2 timescale (sd 1.5) around it. A voxel
   mixes four groups (lexical, prosody, semantic, surprisal) with variance
   shares drawn from a Dirichlet (concentration 30) whose mean is an ROI
   profile times a hemisphere factor (:data:`ROI_SHARES`,
   :data:`HEMI_SHARES`): left voxels mostly carry semantic context and
   surprisal (mean shares 0.13 / 0.03 / 0.45 / 0.39), right voxels prosody
   and lexical features (0.16 / 0.64 / 0.13 / 0.06). Within a group the
   weights are: rate 1, length U(0.1, 0.4), log frequency -U(0.1, 0.4),
   function word N(0, 0.2); prosody 1; semantic a N(0, 1) tuning over the
   categories times the timescale profile; surprisal the timescale profile.
   Each group's signal is scaled to variance ``share`` (over the kept TRs),
   and the sum is normalised to zero mean and unit variance.
5. **Noise.** AR(1) Gaussian noise in time (phi = ``noise_ar``, default
   0.3), stationary, of variance ``n = (1 - f) / f`` where the voxel's
   single-presentation signal fraction ``f`` ~ Beta(1.5, 6) (mean ~0.2, many
   voxels near 0; clipped to [0.002, 0.95]). Test stories get ``n_repeats``
   independent noise draws; the noise ceiling of their mean is
   ``true_cc_max = sqrt(N s / (N s + n))`` with ``s`` the signal variance on
   the kept TRs of the test stories (``signal_var_test``, close to 1).

Why this produces the effects the workflow looks for: lexical features
(mostly word rate) are captured by any model, even word rate alone or an
untrained network; semantic context and surprisal need a trained language
model; prosody is captured by none. So trained models beat untrained ones,
mostly on the left, and the left-minus-right difference grows with how well
a model captures semantic context and predictability (see
``docs/demo_simulation.md`` for a check with MiniLM-L6 and SmolLM2-135M).

Subjects hear the same stories (same timings and prosody) but draw their own
voxels and noise from seeds derived from ``seed``; a story's timing and noise
depend on its name, not on which other stories are simulated.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import zlib
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml
from scipy.signal import fftconvolve, lfilter

from lmbrain.errors import InputError
from lmbrain.io import make_temp_dir
from lmbrain.temporal import glover_hrf_at, tr_times

__all__ = [
    "FUNCTION_WORDS",
    "SEMANTIC_CATEGORIES",
    "TIMESCALES",
    "bigram_surprisal",
    "category_matrix",
    "count_syllables",
    "draw_voxels",
    "effective_weights",
    "ewma",
    "feature_names",
    "demo_mask",
    "load_stories",
    "make_demo_dataset",
    "normalize_word",
    "present_story",
    "simulation_design",
    "story_regressors",
    "word_features",
    "word_timings",
]

#: Time constants (in words) of the causal context integration.
TIMESCALES = (1, 4, 16, 64)

#: TRs dropped at the start and end of every story (written to dataset.yaml).
TRIM_START = 5
TRIM_END = 5
AUDIO_RATE = 16000  # Hz, of the synthetic recordings (speech models expect 16 kHz)

GRID_DT = 0.1  # seconds, the fine grid on which word impulses are placed
HRF_LENGTH = 32.0  # seconds
LEAD_SILENCE = (9.5, 10.5)  # seconds of silence before the first word
TAIL_SILENCE = (10.0, 15.0)  # seconds of silence after the last word
COMMA_PAUSE = (0.15, 0.3)
SENTENCE_PAUSE = (0.4, 0.8)
PROSODY_AR = 0.8
BIGRAM_K = 0.1
SIGNAL_FRACTION_BETA = (1.5, 6.0)
SIGNAL_FRACTION_RANGE = (0.002, 0.95)

FUNCTION_WORDS = frozenset(
    """a an the and or but nor so yet if then than that this these those there here
    of in on at by for with from to into onto upon over under about above below after
    before between through during without within along across against around off out up
    down as like i me my mine myself you your yours he him his she her hers it its we us
    our they them their who whom whose which what when where why how all any both each
    few more most some such no not only own same too very can could will would shall
    should may might must do does did done be am is are was were been being have has had
    having just also again once still even ever never""".split()
)

#: Ten small hand-written semantic categories (lower-case base forms; see
#: :func:`category_matrix` for how inflected forms are matched).
SEMANTIC_CATEGORIES: dict[str, frozenset[str]] = {
    name: frozenset(words.split())
    for name, words in {
        "people": """man woman boy girl child children kid baby mother father mom dad parent
            grandmother grandfather grandma grandpa sister brother son daughter aunt uncle wife
            husband family friend neighbour neighbor stranger people person nurse doctor teacher
            captain colonel porter keeper sailor farmer driver cook chef owner headmaster judge
            student patient crowd lad sir mr mrs someone everyone everybody anyone nobody danny
            tom rosalind lidia ewan dana gordon priya beatrice teodor margaret walter okafor
            varga""",
        "places": """house home room kitchen barn farm town city village station platform street
            road church school hospital ward office shop store building bridge harbour harbor
            port coast island lighthouse tower yard garden porch hall door window wall roof
            floor stairs bedroom pool cabin deck place valley ridge trail country apartment
            bookshop reservoir corridor stall world closet corner desert steppe horizon center
            garage basement downstairs neighbourhood mortuary landing inside outside front
            middle top bottom edge side underneath beside downhill uphill east northeast""",
        "nature": """sea ocean water wave river lake rain storm wind fog mist cloud sky sun moon
            star snow ice thunder lightning weather tree forest field grass hill mountain rock
            stone sand beach shore earth dust leaf flower corn hay straw grain soil wood air
            heat cold hot warm wet dry dark dog cow calf horse hound basset fish bird animal
            blue green red yellow gray grey black white""",
        "food": """food bread soup tea coffee milk egg butter cheese meat apple sugar salt flour
            cake pie sandwich dinner lunch breakfast supper meal pot pan plate bowl cup spoon
            fork oven stove kettle eat ate eaten drink drank taste tasting smell smelled potato
            potatoes onion tart jar pickled cucumber wine chocolate sauce rice toast lemon
            sausage honey biscuit digestive thermos flask dishwasher refrigerator counter""",
        "mind": """love fear afraid scared happy happier sad angry anger glad proud ashamed
            shame lonely alone worry worried nervous calm hope wish grief cry cried laugh
            laughed smile smiled tears joy miss missed hate furious cheerful humiliating
            astonished brave funny terrible disappointment puzzled dignity perseverance tired
            weary careful clever rude strange felt feel feeling thought think knew know
            understood understand remember remembered imagine imagined learn learned idea
            believe decided wonder wondered""",
        "motion": """walk walked run ran running move moved moving go went come came climb
            climbed jump fall fell swim swam swum swimming drive drove ride rode push pushed
            pull pulled carry carried throw threw step stepped turn turned rush hurry follow
            lift stood stand standing sat sit sitting took take put held hold holding stopped
            stop started dropped knelt lying lay reached arrived sent bought brought gave give
            pick picked pressed squeezed swung slid wandered passed slowed shook""",
        "time": """time day night morning evening afternoon hour minute second week month year
            summer winter spring autumn today tomorrow yesterday tonight dawn dusk moment
            clock early late later soon always o'clock monday tuesday thursday sunday saturday
            july august midnight first last next past end while until afterwards afterward ago
            finally eventually often already one two three four five six seven eight nine ten
            eleven twelve fourteen eighteen twenty thirty forty seventy hundred""",
        "speech": """sound noise voice loud quiet silence silent listen heard hear ring rang bell
            horn whistle shout shouted scream whisper whispered song sing sang music call
            called click bang crash roar hum said say saying asked ask told tell talk talked
            talking answer answered speak word words language question explained mentioned
            muttered agreed lied insisted announcement megaphone trombone poem radio
            television alarm buzzed clapped""",
        "body": """hand arm face eye head hair mouth lip ear nose neck shoulder leg foot feet
            knee finger skin heart chest stomach knuckle forearm breath blood bone forehead
            wrist waist lap breathe sleep slept woke wake blister bruised brain died dead born
            life lives living body""",
        "objects": """box bag suitcase letter paper book pen pencil phone key lamp light rope
            chair table bed blanket bottle glass tool hammer knife bucket boat car truck train
            ticket wheel engine machine trolley hat coat jacket dress sheet map pager photograph
            printer cardboard plastic metal brass leather bench plank board lantern lens card
            game sack bin rubbish towel drawer mop strip brick bunk tent lock van plane bus
            carriage rail sample gift rosette jumper fence""",
    }.items()
}

_STRIP = re.compile(r"^[^\w']+|[^\w']+$")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
_CLAUSE_END = re.compile(r"[,;:\u2014-][\"')\]]*$")


# --------------------------------------------------------------------------- #
# Text
# --------------------------------------------------------------------------- #
def _story_dir(story_dir: str | Path | None) -> Path:
    if story_dir is not None:
        return Path(story_dir)
    return Path(str(resources.files("lmbrain") / "data" / "demo_stories"))


def load_stories(story_dir: str | Path | None = None) -> dict[str, list[str]]:
    """Read the story texts and split them into spoken words.

    Parameters
    ----------
    story_dir : str or Path, optional
        Folder of ``*.txt`` story files; default the packaged
        ``lmbrain/data/demo_stories``.

    Returns
    -------
    dict of str to list of str
        Story id (file stem) to its whitespace-split words (punctuation and
        capitalisation kept), in file-name order.

    Raises
    ------
    InputError
        If the folder has no ``.txt`` files or a story has no words.
    """
    folder = _story_dir(story_dir)
    paths = sorted(folder.glob("*.txt"))
    if not paths:
        raise InputError(folder, "no story *.txt files found")
    stories = {}
    for path in paths:
        words = path.read_text(encoding="utf-8").split()
        if not words:
            raise InputError(path, "story has no words")
        stories[path.stem] = words
    return stories


def normalize_word(word: str) -> str:
    """Lower-case ``word`` and strip leading/trailing punctuation (inner apostrophes stay).

    Parameters
    ----------
    word : str

    Returns
    -------
    str
        E.g. ``'"You'`` -> ``'you'``, ``"grandmother's,"`` -> ``"grandmother's"``.
    """
    word = word.lower().replace("\u2019", "'")
    return _STRIP.sub("", word).strip("'")


def count_syllables(word: str) -> int:
    """Rough syllable count: vowel groups, minus a silent final 'e', at least 1.

    Parameters
    ----------
    word : str

    Returns
    -------
    int
    """
    w = normalize_word(word)
    n = len(_VOWEL_GROUPS.findall(w))
    if n > 1 and w.endswith("e") and not w.endswith(("le", "ee")):
        n -= 1
    return max(n, 1)


def _base_forms(word: str) -> set[str]:
    """Candidate base forms of a normalised word, for category look-up."""
    forms = {word}
    if word.endswith("'s"):
        word = word[:-2]
        forms.add(word)
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", "")):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            forms.add(word[: -len(suffix)] + repl)
    return forms


def category_matrix(norm_words: list[str]) -> np.ndarray:
    """Membership (0/1) of each normalised word in each of :data:`SEMANTIC_CATEGORIES`.

    Parameters
    ----------
    norm_words : list of str
        Words as returned by :func:`normalize_word`.

    Returns
    -------
    ndarray of shape (n_words, n_categories), float64
    """
    cats = list(SEMANTIC_CATEGORIES.values())
    out = np.zeros((len(norm_words), len(cats)))
    for i, w in enumerate(norm_words):
        forms = _base_forms(w)
        for j, members in enumerate(cats):
            out[i, j] = float(not forms.isdisjoint(members))
    return out


def bigram_surprisal(sequences: list[list[str]], k: float = BIGRAM_K) -> list[np.ndarray]:
    """Surprisal of each word given the previous one under an add-k bigram model.

    The model is fitted on all ``sequences``; the first word of a sequence is
    conditioned on a start symbol ``<s>``. ``p(w | v) = (c(v, w) + k) / (c(v) + k V)``
    with ``V`` the vocabulary size (word types, plus nothing for ``<s>``).

    Parameters
    ----------
    sequences : list of list of str
        Normalised words of each story.
    k : float, default 0.1
        Additive smoothing.

    Returns
    -------
    list of ndarray of float64
        ``-log p(word | previous word)`` in nats, one array per sequence.
    """
    pairs: Counter = Counter()
    contexts: Counter = Counter()
    vocab = set()
    for seq in sequences:
        prev = ["<s>", *seq[:-1]]
        pairs.update(zip(prev, seq, strict=True))
        contexts.update(prev)
        vocab.update(seq)
    v = len(vocab)
    out = []
    for seq in sequences:
        prev = ["<s>", *seq[:-1]]
        p = [(pairs[(a, b)] + k) / (contexts[a] + k * v) for a, b in zip(prev, seq, strict=True)]
        out.append(-np.log(np.asarray(p)))
    return out


def ewma(x: np.ndarray, tau: float) -> np.ndarray:
    """Causal exponentially weighted moving average along axis 0, starting from 0.

    ``y[t] = a y[t-1] + (1 - a) x[t]`` with ``a = exp(-1 / tau)`` and ``y[-1] = 0``.

    Parameters
    ----------
    x : ndarray, shape (n, ...)
    tau : float
        Time constant in samples (words).

    Returns
    -------
    ndarray of the shape of ``x``, float64
    """
    a = math.exp(-1.0 / tau)
    return lfilter([1.0 - a], [1.0, -a], np.asarray(x, dtype=np.float64), axis=0)


# --------------------------------------------------------------------------- #
# Timing
# --------------------------------------------------------------------------- #
def word_timings(
    words: list[str], rng: np.random.Generator, words_per_second: float = 2.6
) -> tuple[np.ndarray, np.ndarray]:
    """Onsets and offsets of spoken ``words`` starting at time 0.

    Word durations are proportional to ``0.5 + syllables`` with log-normal
    jitter (sd 0.15), scaled so that the speech rate excluding pauses is exactly
    ``words_per_second``. A pause of 0.15-0.3 s follows words ending in a
    comma, semicolon, colon or dash, and 0.4-0.8 s follows sentence ends
    (``. ! ?``, possibly before a closing quote); other words follow each other
    without a gap.

    Parameters
    ----------
    words : list of str
        Spoken words, punctuation kept.
    rng : numpy.random.Generator
    words_per_second : float, default 2.6

    Returns
    -------
    onsets, offsets : ndarray of float64, shape (n_words,)
    """
    if words_per_second <= 0:
        raise ValueError("words_per_second must be positive")
    n = len(words)
    raw = np.array([0.5 + count_syllables(w) for w in words], dtype=np.float64)
    raw *= np.exp(rng.normal(0.0, 0.15, size=n))
    durations = raw * (n / words_per_second) / raw.sum()
    pauses = np.zeros(n)
    sentence = np.array([bool(_SENTENCE_END.search(w)) for w in words])
    clause = np.array([bool(_CLAUSE_END.search(w)) for w in words]) & ~sentence
    pauses[sentence] = rng.uniform(*SENTENCE_PAUSE, size=int(sentence.sum()))
    pauses[clause] = rng.uniform(*COMMA_PAUSE, size=int(clause.sum()))
    onsets = np.concatenate([[0.0], np.cumsum(durations + pauses)[:-1]])
    return onsets, onsets + durations


# --------------------------------------------------------------------------- #
# Features
# --------------------------------------------------------------------------- #
LEXICAL = ("word_rate", "word_length", "log_frequency", "function_word")
CONTEXT_BASE = (*SEMANTIC_CATEGORIES, "surprisal")


def feature_names() -> list[str]:
    """Names of the word-level features, in the column order of :func:`word_features`.

    Returns
    -------
    list of str
        The four lexical features, ``prosody``, then ``<semantic category>_tau<T>``
        and ``surprisal_tau<T>`` for each timescale ``T`` in :data:`TIMESCALES`.
    """
    ctx = [f"{name}_tau{t}" for name in CONTEXT_BASE for t in TIMESCALES]
    return [*LEXICAL, "prosody", *ctx]


@dataclass(frozen=True)
class Corpus:
    """Corpus statistics shared by all stories (frequencies and the bigram model)."""

    log_freq: dict[str, float]
    unseen_log_freq: float
    surprisal: dict[str, np.ndarray]

    @classmethod
    def fit(cls, stories: dict[str, list[str]]) -> Corpus:
        """Fit add-one log frequencies and bigram surprisals on ``stories``."""
        norm = {s: [normalize_word(w) for w in ws] for s, ws in stories.items()}
        counts = Counter(w for ws in norm.values() for w in ws)
        total, v = sum(counts.values()), len(counts)
        denom = math.log(total + v)
        log_freq = {w: math.log(c + 1) - denom for w, c in counts.items()}
        surprisal = dict(zip(norm, bigram_surprisal(list(norm.values())), strict=True))
        return cls(log_freq=log_freq, unseen_log_freq=-denom, surprisal=surprisal)


def word_features(words: list[str], corpus: Corpus, story: str, prosody: np.ndarray) -> np.ndarray:
    """Word-level feature matrix of one story (columns as in :func:`feature_names`).

    Parameters
    ----------
    words : list of str
        The story's spoken words.
    corpus : Corpus
        Frequencies and bigram surprisals (``corpus.surprisal[story]``).
    story : str
        Story id, to look up its surprisals.
    prosody : ndarray, shape (n_words,)
        The per-word prosody values.

    Returns
    -------
    ndarray of shape (n_words, n_features), float64
        Lexical features and prosody raw; semantic indicators and surprisal
        centred (by their corpus-wide means, fixed constants) and integrated
        with :func:`ewma` at each timescale.
    """
    norm = [normalize_word(w) for w in words]
    lexical = np.column_stack(
        [
            [len(w) for w in norm],
            [corpus.log_freq.get(w, corpus.unseen_log_freq) for w in norm],
            [float(w in FUNCTION_WORDS) for w in norm],
        ]
    )
    lexical = np.column_stack([np.ones(len(words)), lexical - lexical.mean(axis=0)])
    context = np.column_stack([category_matrix(norm), corpus.surprisal[story]])
    context = context - context.mean(axis=0)
    integrated = np.stack([ewma(context, t) for t in TIMESCALES], axis=2)
    return np.column_stack([lexical, prosody, integrated.reshape(len(words), -1)])


def _hrf_kernel() -> np.ndarray:
    return glover_hrf_at(np.arange(0.0, HRF_LENGTH, GRID_DT)) * GRID_DT


def story_regressors(
    features: np.ndarray, word_times: np.ndarray, n_trs: int, tr: float
) -> np.ndarray:
    """HRF-convolved regressors of word-level ``features`` sampled at the TR times.

    Each word contributes an impulse of height ``features[i]`` at
    ``word_times[i]`` on a 0.1 s grid; the impulse train is convolved with the
    Glover HRF (:func:`lmbrain.temporal.glover_hrf_at`, unit integral) and
    sampled at ``tr_times(n_trs, tr)``.

    Parameters
    ----------
    features : ndarray, shape (n_words, n_features)
    word_times : ndarray, shape (n_words,)
        Seconds from the start of the run.
    n_trs : int
    tr : float

    Returns
    -------
    ndarray of shape (n_trs, n_features), float64
    """
    n_grid = int(math.ceil(n_trs * tr / GRID_DT)) + 1
    impulses = np.zeros((n_grid, features.shape[1]))
    np.add.at(impulses, np.rint(np.asarray(word_times) / GRID_DT).astype(int), features)
    conv = fftconvolve(impulses, _hrf_kernel()[:, None], axes=0)[:n_grid]
    idx = np.rint(tr_times(n_trs, tr) / GRID_DT).astype(int)
    return conv[idx]


# --------------------------------------------------------------------------- #
# Voxels
# --------------------------------------------------------------------------- #
#: ROI -> (share of left voxels, share of right voxels, preferred log2 timescale).
ROIS = {
    "AC": (0.20, 0.35, 0.0),
    "STS": (0.30, 0.35, 2.0),
    "IFG": (0.25, 0.15, 3.5),
    "AG": (0.25, 0.15, 4.5),
}
#: Shift of the preferred log2 timescale by hemisphere.
HEMI_LOG2_SHIFT = {"L": 0.75, "R": -0.75}
GROUPS = ("lexical", "prosody", "semantic", "surprisal")
#: Mean group shares by ROI (lexical, prosody, semantic, surprisal) ...
ROI_SHARES = {
    "AC": (0.50, 0.25, 0.15, 0.10),
    "STS": (0.30, 0.15, 0.30, 0.25),
    "IFG": (0.15, 0.10, 0.35, 0.40),
    "AG": (0.10, 0.10, 0.55, 0.25),
}
#: ... multiplied by a hemisphere factor and renormalised.
HEMI_SHARES = {"L": (0.4, 0.2, 1.3, 1.5), "R": (0.6, 4.0, 0.4, 0.25)}
SHARE_CONCENTRATION = 30.0
TIMESCALE_WIDTH = 1.5  # sd of the timescale profile, in log2 units
TIMESCALE_JITTER = 0.7  # sd of the voxel's preferred log2 timescale around its ROI's


def _allocate(n: int, fractions: list[float]) -> np.ndarray:
    """Split ``n`` items by ``fractions`` with the largest-remainder rule."""
    exact = np.asarray(fractions) / np.sum(fractions) * n
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def _voxel_table(voxels_per_hemisphere: int) -> tuple[list[str], list[str]]:
    hemis, rois = [], []
    for h, col in (("L", 0), ("R", 1)):
        counts = _allocate(voxels_per_hemisphere, [v[col] for v in ROIS.values()])
        for roi, c in zip(ROIS, counts, strict=True):
            hemis += [h] * int(c)
            rois += [roi] * int(c)
    return hemis, rois


@dataclass(frozen=True)
class Voxels:
    """Planted parameters of one subject's voxels."""

    hemisphere: list[str]
    roi: list[str]
    shares: np.ndarray  # (n_voxels, 4) variance shares of GROUPS
    timescale: np.ndarray  # (n_voxels, len(TIMESCALES)) profile, rows sum to 1
    weights: np.ndarray  # (n_features, n_voxels) raw within-group weights
    signal_fraction: np.ndarray  # (n_voxels,)


def draw_voxels(voxels_per_hemisphere: int, rng: np.random.Generator) -> Voxels:
    """Draw one subject's voxel parameters.

    Parameters
    ----------
    voxels_per_hemisphere : int
    rng : numpy.random.Generator

    Returns
    -------
    Voxels
        Hemisphere and ROI labels (left voxels first), group variance shares,
        timescale profiles, within-group weights and signal fractions.
    """
    hemis, rois = _voxel_table(voxels_per_hemisphere)
    n = len(hemis)
    log2_tau = np.log2(TIMESCALES)
    shares = np.empty((n, len(GROUPS)))
    profile = np.empty((n, len(TIMESCALES)))
    for v, (h, roi) in enumerate(zip(hemis, rois, strict=True)):
        mean = np.multiply(ROI_SHARES[roi], HEMI_SHARES[h])
        shares[v] = rng.dirichlet(SHARE_CONCENTRATION * mean / mean.sum())
        pref = ROIS[roi][2] + HEMI_LOG2_SHIFT[h] + rng.normal(0.0, TIMESCALE_JITTER)
        p = np.exp(-0.5 * ((log2_tau - pref) / TIMESCALE_WIDTH) ** 2)
        profile[v] = p / p.sum()
    lexical = np.column_stack(
        [
            np.ones(n),
            rng.uniform(0.1, 0.4, n),
            -rng.uniform(0.1, 0.4, n),
            rng.normal(0.0, 0.2, n),
        ]
    )
    tuning = rng.normal(0.0, 1.0, (n, len(SEMANTIC_CATEGORIES)))
    semantic = tuning[:, :, None] * profile[:, None, :]
    weights = np.column_stack([lexical, np.ones(n), semantic.reshape(n, -1), profile]).T
    frac = np.clip(rng.beta(*SIGNAL_FRACTION_BETA, size=n), *SIGNAL_FRACTION_RANGE)
    return Voxels(hemis, rois, shares, profile, weights, frac)


def _group_slices() -> dict[str, slice]:
    n_lex, n_sem = len(LEXICAL), len(SEMANTIC_CATEGORIES) * len(TIMESCALES)
    return {
        "lexical": slice(0, n_lex),
        "prosody": slice(n_lex, n_lex + 1),
        "semantic": slice(n_lex + 1, n_lex + 1 + n_sem),
        "surprisal": slice(n_lex + 1 + n_sem, n_lex + 1 + n_sem + len(TIMESCALES)),
    }


def effective_weights(vox: Voxels, x_kept: np.ndarray) -> np.ndarray:
    """Mixing weights that give each group unit variance times ``sqrt(share)``.

    Parameters
    ----------
    vox : Voxels
    x_kept : ndarray, shape (n_kept_trs, n_features)
        Standardised regressors on the kept TRs of all stories.

    Returns
    -------
    ndarray of shape (n_features, n_voxels)
    """
    w = np.zeros_like(vox.weights)
    for g, sl in enumerate(_group_slices().values()):
        sd = (x_kept[:, sl] @ vox.weights[sl]).std(axis=0)
        w[sl] = vox.weights[sl] * (np.sqrt(vox.shares[:, g]) / np.maximum(sd, 1e-12))
    return w


def _ar1_noise(rng: np.random.Generator, shape: tuple[int, ...], phi: float) -> np.ndarray:
    """Unit-variance stationary AR(1) noise along axis -2 (time)."""
    e = rng.standard_normal(shape)
    e[..., 0, :] /= math.sqrt(1.0 - phi**2)
    return lfilter([math.sqrt(1.0 - phi**2)], [1.0, -phi], e, axis=-2)


# --------------------------------------------------------------------------- #
# The dataset
# --------------------------------------------------------------------------- #
def _seed(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _story_key(story: str) -> int:
    return zlib.crc32(story.encode("utf-8"))


@dataclass(frozen=True)
class Stimulus:
    """One story as presented: words, timings and TR count."""

    words: list[str]
    onsets: np.ndarray
    offsets: np.ndarray
    n_trs: int
    prosody: np.ndarray


def present_story(
    words: list[str], seed: int, story: str, tr: float, words_per_second: float
) -> Stimulus:
    """Time a story within its run (lead and tail silence) and draw its prosody.

    Parameters
    ----------
    words : list of str
    seed : int
        Base seed; the story's generator is derived from it and the story name.
    story : str
    tr : float
    words_per_second : float

    Returns
    -------
    Stimulus
        ``n_trs = ceil(run_duration / tr)``.
    """
    rng = _seed(seed, 0, _story_key(story))
    onsets, offsets = word_timings(words, rng, words_per_second)
    lead = rng.uniform(*LEAD_SILENCE)
    duration = lead + offsets[-1] + rng.uniform(*TAIL_SILENCE)
    prosody = lfilter([1.0], [1.0, -PROSODY_AR], rng.standard_normal(len(words)))
    n_trs = int(math.ceil(duration / tr))
    return Stimulus(words, onsets + lead, offsets + lead, n_trs, prosody)


def _kept(n_trs: int) -> slice:
    return slice(TRIM_START, n_trs - TRIM_END)


def simulation_design(
    texts: dict[str, list[str]],
    selected: list[str],
    seed: int,
    tr: float = 2.0,
    words_per_second: float = 2.6,
) -> tuple[dict[str, Stimulus], dict[str, np.ndarray]]:
    """Stimuli and standardised TR-level regressors of the selected stories.

    Parameters
    ----------
    texts : dict of str to list of str
        All stories (as from :func:`load_stories`); word frequencies and the
        bigram model are fitted on all of them.
    selected : list of str
        Stories to present.
    seed : int
        Base seed (timings and prosody).
    tr : float, default 2.0
    words_per_second : float, default 2.6

    Returns
    -------
    stimuli : dict of str to Stimulus
    regressors : dict of str to ndarray of shape (n_trs, n_features)
        :func:`story_regressors` of :func:`word_features` at each word's
        midpoint, standardised (zero mean, unit variance) over the kept
        (trimmed) TRs of all selected stories.
    """
    corpus = Corpus.fit(texts)
    stims, regs = {}, {}
    for s in selected:
        stim = present_story(texts[s], seed, s, tr, words_per_second)
        feats = word_features(stim.words, corpus, s, stim.prosody)
        stims[s] = stim
        regs[s] = story_regressors(feats, (stim.onsets + stim.offsets) / 2, stim.n_trs, tr)
    kept = np.concatenate([regs[s][_kept(stims[s].n_trs)] for s in selected])
    mu, sd = kept.mean(axis=0), kept.std(axis=0)
    sd[sd == 0] = 1.0
    return stims, {s: (r - mu) / sd for s, r in regs.items()}


def _subject_signal(
    vox: Voxels, stims: dict[str, Stimulus], regs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Noiseless responses, zero mean and unit variance over all kept TRs."""
    kept = np.concatenate([regs[s][_kept(st.n_trs)] for s, st in stims.items()])
    w = effective_weights(vox, kept)
    k_sig = kept @ w
    mu, sd = k_sig.mean(axis=0), np.maximum(k_sig.std(axis=0), 1e-12)
    return {s: (r @ w - mu) / sd for s, r in regs.items()}


def _validate(texts, selected, tests, story_dir, sizes: dict) -> None:
    folder = _story_dir(story_dir)
    unknown = sorted({s for s in [*selected, *tests] if s not in texts})
    if unknown:
        raise InputError(folder, f"no stories {unknown}; available: {sorted(texts)}")
    if not tests or not set(tests) <= set(selected):
        raise ValueError(f"test_stories {tests} must be a non-empty subset of stories {selected}")
    if len(set(selected) - set(tests)) < 1:
        raise ValueError("needs at least one training story besides the test stories")
    bad = [k for k, v in sizes.items() if not v > (1 if k == "n_repeats" else 0)]
    if bad:
        raise ValueError(f"invalid {', '.join(bad)}: {sizes}")


def _write_tsv(path: Path, header: list[str], rows) -> None:
    lines = ["\t".join(header)] + ["\t".join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _write_subject(
    root: Path,
    subject: str,
    sub_index: int,
    seed: int,
    vph: int,
    stims: dict[str, Stimulus],
    regs: dict[str, np.ndarray],
    test_stories: list[str],
    n_repeats: int,
    noise_ar: float,
) -> None:
    vox = draw_voxels(vph, _seed(seed, 1, sub_index))
    signal = _subject_signal(vox, stims, regs)
    noise_var = (1.0 - vox.signal_fraction) / vox.signal_fraction
    noise_sd = np.sqrt(noise_var)
    resp = root / "responses" / subject
    truth = root / "ground_truth" / subject
    resp.mkdir(parents=True)
    truth.mkdir(parents=True)
    for s, sig in signal.items():
        rng = _seed(seed, 2, sub_index, _story_key(s))
        reps = n_repeats if s in test_stories else 1
        noise = _ar1_noise(rng, (reps, *sig.shape), noise_ar) * noise_sd
        y = (sig + noise).astype(np.float32)
        if s in test_stories:
            np.save(resp / f"{s}_repeats.npy", y)
            np.save(resp / f"{s}.npy", y.astype(np.float64).mean(axis=0).astype(np.float32))
            np.save(truth / f"{s}_signal.npy", sig.astype(np.float32))
        else:
            np.save(resp / f"{s}.npy", y[0])
    s_test = np.mean([signal[s][_kept(stims[s].n_trs)].var(axis=0) for s in test_stories], 0)
    cc_max = np.sqrt(n_repeats * s_test / (n_repeats * s_test + noise_var))
    _write_voxel_tables(root, subject, vox, noise_sd, s_test, cc_max)


def _write_voxel_tables(root, subject, vox, noise_sd, s_test, cc_max) -> None:
    n = len(vox.hemisphere)
    _write_tsv(
        root / "voxels" / f"{subject}.tsv",
        ["voxel", "hemisphere", "roi"],
        zip(range(n), vox.hemisphere, vox.roi, strict=True),
    )
    log2_tau = np.log2(TIMESCALES)
    long_w = vox.timescale[:, np.asarray(TIMESCALES) >= 16].sum(axis=1)
    cols = {
        "signal_fraction": vox.signal_fraction,
        "noise_sd": noise_sd,
        "signal_var_test": s_test,
        "true_cc_max": cc_max,
        "dominant_timescale": np.asarray(TIMESCALES)[vox.timescale.argmax(axis=1)],
        "mean_log2_timescale": vox.timescale @ log2_tau,
        "long_timescale_weight": long_w,
        **{f"share_{g}": vox.shares[:, i] for i, g in enumerate(GROUPS)},
    }
    rows = [
        [v, vox.hemisphere[v], vox.roi[v]]
        + [str(c[v]) if c.dtype.kind == "i" else _fmt(c[v]) for c in cols.values()]
        for v in range(n)
    ]
    _write_tsv(
        root / "ground_truth" / f"{subject}.tsv", ["voxel", "hemisphere", "roi", *cols], rows
    )


def demo_mask(voxels_per_hemisphere: int, voxel_size: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """A small 3-D mask placing the simulated voxels in two blobs, left and right.

    Each hemisphere's voxels are the ``voxels_per_hemisphere`` voxels of a cube closest to
    its centre (ties broken by index), the left cube at small ``i`` and the right one at large
    ``i`` of a grid whose world x is 0 midway between them, so in C order (the column order of
    :class:`lmbrain.geometry.VolumeGeometry`) the left voxels come first, as in the voxel
    tables, and lie at world x < 0. Blob centres are at x = +-48 mm, y = -20 mm, z = 0 (about
    where the superior temporal cortex is in MNI space). The responses do not depend on it.

    Parameters
    ----------
    voxels_per_hemisphere : int
    voxel_size : float, default 3.0
        Millimetres.

    Returns
    -------
    mask : numpy.ndarray of bool, shape (nx, n, n)
    affine : numpy.ndarray, shape (4, 4)
    """
    n = max(1, math.ceil((6.0 * voxels_per_hemisphere / math.pi) ** (1.0 / 3.0)))
    while n**3 < voxels_per_hemisphere:
        n += 1
    gap = max(1, round(2 * 48.0 / voxel_size) - n)
    ijk = np.indices((n, n, n)).reshape(3, -1).T
    dist = ((ijk - (n - 1) / 2.0) ** 2).sum(axis=1)
    chosen = ijk[np.lexsort((np.arange(len(dist)), dist))[:voxels_per_hemisphere]]
    mask = np.zeros((2 * n + gap, n, n), dtype=bool)
    for offset in (0, n + gap):
        mask[chosen[:, 0] + offset, chosen[:, 1], chosen[:, 2]] = True
    centre = (np.array(mask.shape) - 1) / 2.0
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = -voxel_size * centre + np.array([0.0, -20.0, 0.0])
    return mask, affine


def _write_mask(path: Path, voxels_per_hemisphere: int) -> None:
    import nibabel as nib

    mask, affine = demo_mask(voxels_per_hemisphere)
    img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


def _write_stimuli(root: Path, stims: dict[str, Stimulus], audio_tr: float | None = None) -> None:
    """Word tables, and with ``audio_tr`` a synthetic recording of each run (16 kHz WAV)."""
    (root / "stimuli").mkdir(parents=True)
    for s, st in stims.items():
        rows = (
            (w, f"{a:.3f}", f"{b:.3f}")
            for w, a, b in zip(st.words, st.onsets, st.offsets, strict=True)
        )
        _write_tsv(root / "stimuli" / f"{s}.tsv", ["word", "onset", "offset"], rows)
        if audio_tr is not None:
            from lmbrain.audio import synthesize_speechlike, write_wav

            # the table's rounded timings, so the recording matches what readers see
            onsets = np.round(st.onsets, 3)
            offsets = np.round(st.offsets, 3)
            wave = synthesize_speechlike(onsets, offsets, st.words, st.n_trs * audio_tr, AUDIO_RATE)
            write_wav(root / "stimuli" / f"{s}.wav", wave, AUDIO_RATE)


@contextlib.contextmanager
def _staging(out_dir: Path):
    """Yield a temporary folder beside ``out_dir``; move it onto ``out_dir`` on success."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "dataset.yaml").exists():
        raise InputError(out_dir, "exists, is not empty and is not a dataset; not replacing it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out_dir)  # the umask's mode, not mkdtemp's 700 (lmbrain.io)
    try:
        yield tmp
        old = None
        if out_dir.exists():
            old = make_temp_dir(out_dir)
            os.replace(out_dir, old / "d")
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def make_demo_dataset(
    out_dir: str | Path,
    seed: int = 0,
    n_subjects: int = 2,
    voxels_per_hemisphere: int = 150,
    tr: float = 2.0,
    n_repeats: int = 10,
    test_stories: list[str] | None = None,
    stories: list[str] | None = None,
    words_per_second: float = 2.6,
    *,
    noise_ar: float = 0.3,
    story_dir: str | Path | None = None,
    audio: bool = False,
) -> Path:
    """Simulate fMRI responses to the demo stories and write them in the native layout.

    See the module docstring (and ``docs/demo_simulation.md``) for the
    generative model. Files are written into a temporary folder beside
    ``out_dir`` that replaces ``out_dir`` only once complete.

    Parameters
    ----------
    out_dir : str or Path
        Dataset root to create (replaced if it already holds a dataset).
    seed : int, default 0
        Base seed; the same seed gives byte-identical files.
    n_subjects : int, default 2
        Subjects ``sub-01``, ``sub-02``, ...
    voxels_per_hemisphere : int, default 150
    tr : float, default 2.0
        Repetition time, seconds.
    n_repeats : int, default 10
        Presentations of each test story.
    test_stories : list of str, optional
        Held-out stories; default the last selected story.
    stories : list of str, optional
        Subset of story ids to simulate (default all). Word frequencies and the
        bigram model always use every story in the folder.
    words_per_second : float, default 2.6
        Speech rate excluding pauses.
    noise_ar : float, default 0.3
        AR(1) coefficient of the noise in time (0 for white noise).
    story_dir : str or Path, optional
        Folder of ``*.txt`` stories; default the packaged demo stories.
    audio : bool, default False
        Also write ``stimuli/<story>.wav``: a deterministic speech-like recording of each
        run aligned to the word timings (:func:`lmbrain.audio.synthesize_speechlike`), for
        speech models. The responses do not depend on it.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    InputError
        For unknown stories, or an ``out_dir`` that holds something other
        than a dataset.
    ValueError
        For test stories outside ``stories``, no training story, or sizes out
        of range (``n_repeats`` must be at least 2).
    """
    out_dir = Path(out_dir)
    texts = load_stories(story_dir)
    selected = list(texts) if stories is None else sorted(set(stories))
    tests = [selected[-1]] if test_stories is None else list(test_stories)
    sizes = {
        "n_subjects": n_subjects,
        "voxels_per_hemisphere": voxels_per_hemisphere,
        "tr": tr,
        "n_repeats": n_repeats,
        "words_per_second": words_per_second,
    }
    _validate(texts, selected, tests, story_dir, sizes)
    subjects = [f"sub-{i + 1:02d}" for i in range(n_subjects)]
    stims, regs = simulation_design(texts, selected, seed, tr, words_per_second)
    meta = {
        "name": "demo",
        "tr": float(tr),
        "trim": {"start": TRIM_START, "end": TRIM_END},
        "test_stories": tests,
        "n_repeats": int(n_repeats),
        "subjects": subjects,
    }
    with _staging(out_dir) as root:
        _write_stimuli(root, stims, audio_tr=tr if audio else None)
        (root / "voxels").mkdir()
        for i, subject in enumerate(subjects):
            _write_subject(
                root,
                subject,
                i,
                seed,
                voxels_per_hemisphere,
                stims,
                regs,
                tests,
                n_repeats,
                noise_ar,
            )
            _write_mask(root / "voxels" / f"{subject}_mask.nii.gz", voxels_per_hemisphere)
        (root / "dataset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return out_dir
