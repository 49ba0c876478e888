"""The alignment diagnostic finds a planted shift of the word times, and warns about it.

The planted datasets are written in the native layout with responses built here, without the
package's temporal model: every word's true time is its annotated time plus ``offset_s``; each
voxel is a weight times the sum over words of a gamma-shaped response (peak 5 s after the
word, computed on a 0.05-s grid) sampled at the TR midpoints, plus noise. The diagnostic must
put the best lag at ``+offset_s`` (words moved later by the offset) within one TR.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import gamma

sys.path.insert(0, str(Path(__file__).parent))
import dataset_fixtures as fx  # noqa: E402

from lmbrain.alignment import (  # noqa: E402
    BEST_COLUMNS,
    COLUMNS,
    alignment_curve,
    best_lags,
    check_alignment,
    lag_grid,
)
from lmbrain.datasets import open_dataset  # noqa: E402
from lmbrain.errors import ConfigError  # noqa: E402

TR = 2.0
TEMPORAL = {"method": "lanczos", "window": 3, "delays": [1, 2, 3, 4]}
FITTING = {"alphas": {"logspace": [-2, 4, 7]}, "n_folds": 3, "backend": "numpy", "solver": "auto"}
STORIES = ["a", "b", "c", "d", "t"]


def planted_response(true_times: np.ndarray, n_trs: int, tr: float) -> np.ndarray:
    """Sum over words of a gamma response (shape 6, scale 1 s: peak at 5 s) at the TR midpoints."""
    t = np.arange(n_trs) * tr + tr / 2
    lag = t[:, None] - true_times[None, :]
    return np.where(lag > 0, gamma.pdf(np.maximum(lag, 0), 6.0, scale=1.0), 0.0).sum(axis=1)


def make_planted(root: Path, offset_s: float, n_vox: int = 12, noise: float = 0.5, seed: int = 0):
    """A native dataset whose words truly occur ``offset_s`` after their annotated times."""
    rng = np.random.default_rng(seed)
    for sub in ("stimuli", "responses/s1", "responses/s2", "voxels"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    meta = {
        "tr": TR,
        "trim": {"start": 2, "end": 2},
        "test_stories": ["t"],
        "subjects": ["s1", "s2"],
    }
    (root / "dataset.yaml").write_text(yaml.safe_dump(meta))
    weights = {s: rng.uniform(0.5, 1.5, n_vox) for s in ("s1", "s2")}
    for story in STORIES:
        words, on, off = fx.story_words(rng, 120, start_s=14.0)
        rows = ["word\tonset\toffset"] + [
            f"{w}\t{a:.3f}\t{b:.3f}" for w, a, b in zip(words, on, off, strict=True)
        ]
        (root / "stimuli" / f"{story}.tsv").write_text("\n".join(rows) + "\n")
        n_trs = int(np.ceil((off[-1] + 20.0) / TR))
        signal = planted_response((on + off) / 2 + offset_s, n_trs, TR)
        signal = (signal - signal.mean()) / signal.std()
        for subject, w in weights.items():
            y = signal[:, None] * w[None, :] + noise * rng.standard_normal((n_trs, n_vox))
            np.save(root / "responses" / subject / f"{story}.npy", y.astype(np.float32))
    for subject in weights:
        hemi = ["L"] * (n_vox // 2) + ["R"] * (n_vox - n_vox // 2)
        (root / "voxels" / f"{subject}.tsv").write_text(
            "hemisphere\n" + "".join(f"{h}\n" for h in hemi)
        )
    return root


def curves(root: Path, **kw) -> pd.DataFrame:
    ds = open_dataset(root)
    lags = lag_grid({"start": -10, "stop": 10}, ds.tr)
    return pd.concat(
        [
            alignment_curve(ds, s, lags, temporal=TEMPORAL, fitting=FITTING, **kw)
            for s in ds.subjects
        ],
        ignore_index=True,
    )


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    return curves(make_planted(tmp_path_factory.mktemp("shifted"), offset_s=6.0))


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    return curves(make_planted(tmp_path_factory.mktemp("aligned"), offset_s=0.0))


def test_finds_a_planted_six_second_shift(shifted):
    best = best_lags(shifted).set_index("subject")
    assert list(best.columns) == list(BEST_COLUMNS)[:1] + list(BEST_COLUMNS)[2:]
    for subject in ("s1", "s2", "mean"):
        assert abs(best.loc[subject, "best_lag_s"] - 6.0) <= TR, best
    mean = best.loc["mean"]
    assert mean["best_r"] > mean["r_at_0"] + 0.2  # a real loss at the annotated timing


def test_aligned_dataset_peaks_at_zero(aligned):
    best = best_lags(aligned).set_index("subject")
    for subject in ("s1", "s2", "mean"):
        assert abs(best.loc[subject, "best_lag_s"]) <= TR, best
    assert best.loc["mean", "best_r"] > 0.5


def test_table_columns_and_grid(shifted):
    assert list(shifted.columns) == list(COLUMNS)
    assert len(shifted) == 2 * 11  # 2 subjects x lags -10, -8, ..., 10
    np.testing.assert_allclose(shifted["lag_trs"], shifted["lag_s"] / TR)
    assert (shifted["n_voxels"] == 12).all() and (shifted["cv"] == "test_stories").all()
    assert set(shifted["method"]) == {"hrf"} and set(shifted["n_features"]) == {1}


def test_warning_names_the_dataset_when_shifted(shifted, aligned, caplog):
    with caplog.at_level(logging.WARNING, logger="lmbrain"):
        assert check_alignment(aligned, TR) == []
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="lmbrain"):
        messages = check_alignment(shifted.assign(dataset="planted"), TR)
    assert len(messages) == 1 and caplog.records[-1].levelno == logging.WARNING
    assert "dataset 'planted'" in messages[0] and "later" in messages[0]
    assert "s1" in messages[0] and "s2" in messages[0]
    # a wider tolerance accepts the shift
    assert check_alignment(shifted, TR, tolerance_s=7.0) == []


def test_random_embedding_and_fir_designs(tmp_path):
    root = make_planted(tmp_path / "ds", offset_s=6.0, noise=0.3)
    ds = open_dataset(root)
    lags = [-4.0, 0.0, 6.0]
    table = alignment_curve(
        ds,
        "s1",
        lags,
        temporal=TEMPORAL,
        fitting=FITTING,
        features=["random_embedding"],
        width=8,
    )
    assert set(table["n_features"]) == {8}
    r = table.set_index("lag_s")["mean_r"]
    assert r[6.0] > r[0.0] > -1 and r[6.0] > r[-4.0]
    # the config's FIR delays (1-4 TRs) span part of the shift, so lag 0 scores better than
    # with the fixed HRF, but the planted lag still wins over the annotated one
    fir = alignment_curve(ds, "s1", lags, temporal=TEMPORAL, fitting=FITTING, method="temporal")
    assert set(fir["n_features"]) == {4}
    r = fir.set_index("lag_s")["mean_r"]
    assert r[6.0] > r[0.0]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"start": -10, "stop": 10}, np.arange(-5, 6) * 2.0),
        ({"start": -3, "stop": 5, "step": 1.5}, [-3.0, -1.5, 0.0, 1.5, 3.0, 4.5]),
        ([4, 0, -2], [-2.0, 0.0, 4.0]),
    ],
)
def test_lag_grid(spec, expected):
    np.testing.assert_allclose(lag_grid(spec, TR), expected)


def test_lag_grid_with_a_non_round_tr_keeps_zero():
    lags = lag_grid({"start": -10, "stop": 10}, 2.0045)
    assert 0.0 in lags and len(lags) == 9  # -4 .. 4 TRs (5 TRs = 10.02 s is outside)
    np.testing.assert_allclose(lags / 2.0045, np.arange(-4, 5))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"start": 2, "stop": 10}, "must contain 0"),
        ({"start": -2, "stop": 2, "step": 0}, "step must be positive"),
        ([1.0, 2.0], "must include 0"),
    ],
)
def test_lag_grid_errors(spec, message):
    with pytest.raises(ConfigError, match=message) as info:
        lag_grid(spec, TR)
    assert "alignment.lags_s" in str(info.value)


# -- the workflow rule ------------------------------------------------------------------------
def dry_run_counts(tmp_path: Path, alignment: dict | None, simulate: bool = False) -> dict:
    from test_workflow import run_snakemake

    from lmbrain.testing import job_counts

    spec = (
        {"simulate": {"seed": 0, "n_subjects": 2, "voxels_per_hemisphere": 4}}
        if simulate
        else {"format": "native", "path": str(make_planted(tmp_path / "data", offset_s=0.0))}
    )
    config = {
        "datasets": {"planted": spec},
        "models": [{"name": "rv", "baseline": "random_vectors", "width": 8}],
        "train_fractions": [1.0],
    }
    if alignment is not None:
        config["alignment"] = alignment
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    res = run_snakemake(tmp_path, "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    return job_counts(res.stdout + res.stderr)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("alignment", "simulate", "expected"),
    [
        (None, False, (2, 1)),  # on by default for a dataset read from disk: a job per subject
        ({"enabled": False}, False, (0, 0)),
        (None, True, (0, 0)),  # auto: off for the simulated datasets
        ({"enabled": True, "features": "random_embedding"}, True, (2, 1)),
    ],
)
def test_rule_job_counts(tmp_path, alignment, simulate, expected):
    counts = dry_run_counts(tmp_path, alignment, simulate)
    got = (counts.get("alignment_curve", 0), counts.get("summarize_alignment", 0))
    assert got == expected, counts


@pytest.mark.slow
def test_bad_lag_list_fails_before_any_job(tmp_path):
    from test_workflow import run_snakemake

    config = {
        "datasets": {"planted": {"path": str(make_planted(tmp_path / "data", offset_s=0.0))}},
        "models": [{"name": "rv", "baseline": "random_vectors", "width": 8}],
        "alignment": {"lags_s": [2, 4]},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    res = run_snakemake(tmp_path, "-n")
    assert res.returncode != 0 and "alignment.lags_s" in res.stdout + res.stderr


def test_plot_alignment_writes_a_png(shifted, tmp_path):
    from lmbrain.plotting import plot_alignment

    for name, table in [("curves", shifted), ("empty", shifted.iloc[:0])]:
        path = tmp_path / f"{name}.png"
        plot_alignment(table, best_lags(table), path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hrf_designs_ignore_the_fir_settings():
    """The default designs do not depend on `temporal` (so changing it reruns nothing)."""
    from lmbrain.alignment import design_settings

    a = design_settings(TEMPORAL, "hrf")
    b = design_settings({"method": "lanczos", "window": 5, "delays": [2, 3]}, "hrf")
    assert a == b and a["method"] == "hrf"
    assert design_settings(TEMPORAL, "temporal") == TEMPORAL
    with pytest.raises(ConfigError, match="alignment.method"):
        design_settings(TEMPORAL, "fir")
