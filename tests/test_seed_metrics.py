"""The seed papers' summaries (lmbrain.scoring.paper_summaries) against planted voxel sets."""

import numpy as np
import pandas as pd
import pytest

from lmbrain.scoring import normalized_r, paper_summaries, reliable_voxels


def test_reliable_voxels_picks_the_planted_top_quarter():
    rng = np.random.default_rng(0)
    n = 200
    ceiling = rng.uniform(0.0, 0.4, n)
    planted = rng.choice(n, 50, replace=False)
    ceiling[planted] = rng.uniform(0.6, 0.9, 50)
    ceiling[rng.choice(np.setdiff1d(np.arange(n), planted), 10, replace=False)] = np.nan
    mask = reliable_voxels(ceiling, 50 / 190)
    assert set(np.flatnonzero(mask)) == set(planted)
    assert reliable_voxels(ceiling, 1.0).sum() == 190  # NaN never selected
    with pytest.raises(ValueError, match="reliable fraction"):
        reliable_voxels(ceiling, 0.0)


def test_paper_summaries_match_brute_force():
    rng = np.random.default_rng(1)
    n = 400
    hemi = np.where(np.arange(n) < n // 2, "L", "R")
    cc = rng.uniform(0.05, 0.9, n)
    r = rng.normal(0.1, 0.2, n)
    r[3] = np.nan
    r_norm = normalized_r(r, cc, 0.1)
    out = paper_summaries(r, r_norm, hemi, cc, 0.25)
    # brute force, voxel by voxel
    signed = [np.sign(v) * v * v for v in r if np.isfinite(v)]
    assert out["mean_signed_r2"] == pytest.approx(np.mean(signed))
    usable = [(r[i] / cc[i]) for i in range(n) if cc[i] >= 0.1 and np.isfinite(r[i])]
    assert out["mean_r2_norm"] == pytest.approx(np.mean([np.sign(v) * v * v for v in usable]))
    left = [r[i] / cc[i] for i in range(n // 2) if cc[i] >= 0.1 and np.isfinite(r[i])]
    assert out["mean_r_norm_left"] == pytest.approx(np.mean(left))
    top = sorted(range(n), key=lambda i: -cc[i])[:100]
    assert out["n_voxels_reliable"] == 100
    assert out["mean_r_reliable"] == pytest.approx(np.nanmean(r[top]))
    right_top = [i for i in top if hemi[i] == "R"]
    assert out["mean_r_reliable_right"] == pytest.approx(np.nanmean(r[right_top]))


def test_signed_r2_penalises_negative_voxels():
    # a planted model with r = +0.3 on half the voxels and -0.3 on the other half: mean r2
    # of the magnitudes would be 0.09, the signed metric sees no net prediction
    r = np.array([0.3, -0.3] * 50)
    out = paper_summaries(r, r, np.array(["L", "R"] * 50), np.ones(100))
    assert out["mean_signed_r2"] == pytest.approx(0.0, abs=1e-12)


def test_reliable_asymmetry_recovers_planted_left_advantage():
    # signal lives in the reliable voxels only, stronger on the left: the reliable summary
    # recovers the planted left-right difference that the all-voxel mean dilutes
    rng = np.random.default_rng(2)
    n = 1000
    hemi = np.where(rng.random(n) < 0.5, "L", "R")
    cc = rng.uniform(0.0, 0.2, n)
    reliable = rng.random(n) < 0.25
    cc[reliable] = rng.uniform(0.6, 0.8, reliable.sum())
    r = rng.normal(0.0, 0.01, n)
    r[reliable & (hemi == "L")] += 0.3
    r[reliable & (hemi == "R")] += 0.2
    out = paper_summaries(r, normalized_r(r, cc), hemi, cc, reliable.mean())
    diff = out["mean_r_reliable_left"] - out["mean_r_reliable_right"]
    assert diff == pytest.approx(0.1, abs=0.01)
    assert out["n_voxels_reliable"] == reliable.sum()


# --------------------------------------------------------------------------- scaling fits


def _score_table(planted):
    """Score rows and voxel store: ``planted`` maps model -> (n_params, modality, family, r2).

    Every voxel of a fit has r = sqrt(r2) (+ tiny paired noise with mean 0 in r², i.e. the
    signed r² of the fit is r2 up to 1e-4); half the voxels get a ceiling of 0.5, so
    mean_r2_norm = (r2 / 0.25) over them.
    """
    from lmbrain.aggregate import SCORE_COLUMNS

    rng = np.random.default_rng(0)
    n_vox = 100
    hemi = np.array(["L", "R"] * (n_vox // 2))
    cc = np.where(np.arange(n_vox) < n_vox // 2, 0.5, 0.05)
    rows, store = [], {}
    for model, (n_params, modality, family, r2) in planted.items():
        for subject in ("S1", "S2", "S3"):
            r = np.sqrt(r2 + rng.uniform(-1e-4, 1e-4, n_vox))
            path = f"{subject}/{model}.npz"
            r_norm = normalized_r(r, cc, 0.1)
            store[path] = {"r": r, "r_norm": r_norm, "cc_max": cc, "hemisphere": hemi}
            row = {c: 0 for c in SCORE_COLUMNS}
            row.update(
                dataset="ds",
                subject=subject,
                model=model,
                family=family,
                modality=modality,
                untrained=False,
                n_params=n_params,
                n_layers=1,
                layer=1,
                train_fraction=1.0,
                n_train_trs=100,
                n_voxels=n_vox,
                mean_r=float(r.mean()),
                mean_r_left=float(r[hemi == "L"].mean()),
                mean_r_right=float(r[hemi == "R"].mean()),
                mean_cv_score=0.1,
                fit_path=path,
                **paper_summaries(r, r_norm, hemi, cc, 0.5),
            )
            rows.append(row)
    return pd.DataFrame(rows), store


PLANTED = {  # text: signed r² slope 0.002 per decade; speech: 0.005
    "t1": (1e6, "text", "opt", 0.010),
    "t2": (1e7, "text", "opt", 0.012),
    "t3": (1e8, "text", "llama", 0.014),
    "t4": (1e9, "text", "llama", 0.016),
    "a1": (1e7, "audio", "whisper", 0.020),
    "a2": (1e8, "audio", "whisper", 0.025),
    "a3": (1e9, "audio", "whisper", 0.030),
}


def test_signed_r2_slopes_per_modality_and_family():
    from lmbrain.aggregate import scaling_fits

    scores, store = _score_table(PLANTED)
    fits = scaling_fits(scores, store.__getitem__, n_boot=200, metrics=["signed_r2"])
    params = fits[(fits["fit"] == "params") & (fits["y_variable"] == "mean_signed_r2")]
    by_group = params.set_index("group")
    assert by_group.loc["modality:text", "slope"] == pytest.approx(0.002, abs=2e-5)
    assert by_group.loc["modality:audio", "slope"] == pytest.approx(0.005, abs=2e-5)
    assert by_group.loc["modality:audio", "modality"] == "audio"
    assert by_group.loc["family:whisper", "slope"] == pytest.approx(0.005, abs=2e-5)
    assert by_group.loc["family:opt", "slope"] == pytest.approx(0.002, abs=2e-5)
    assert "family:llama" in by_group.index and by_group.loc["trained", "modality"] == "all"
    text = by_group.loc["modality:text"]
    # the voxel noise is ±1e-4 in r²: the resampled CI brackets the estimate, tightly
    assert text["slope_ci_low"] <= text["slope"] <= text["slope_ci_high"]
    assert text["slope_ci_high"] - text["slope_ci_low"] < 2e-5
    # r is always fitted first, so the plots (which read mean_r rows) are unchanged
    first = fits[(fits["fit"] == "params") & (fits["group"] == "trained")].iloc[0]
    assert first["y_variable"] == "mean_r"


def test_r2_norm_and_reliable_metrics_fit_their_columns():
    from lmbrain.aggregate import scaling_fits

    scores, store = _score_table({k: v for k, v in PLANTED.items() if v[1] == "text"})
    fits = scaling_fits(scores, store.__getitem__, n_boot=50, metrics=["r2_norm", "reliable"])
    params = fits[(fits["fit"] == "params") & (fits["group"] == "trained")]
    slope = params.set_index("y_variable")["slope"]
    # r2 / cc_max² on the reliable half (cc 0.5): slope 0.002 / 0.25
    assert slope["mean_r2_norm"] == pytest.approx(0.008, abs=1e-4)
    assert set(slope.index) == {"mean_r", "mean_r2_norm", "mean_r_reliable"}
    assert "modality:text" not in set(fits["group"])  # one modality: no split


def test_unknown_metric_is_a_config_error():
    from lmbrain.aggregate import scaling_fits
    from lmbrain.errors import ConfigError

    scores, store = _score_table({k: PLANTED[k] for k in ("t1", "t2")})
    with pytest.raises(ConfigError, match="aggregate.metrics"):
        scaling_fits(scores, store.__getitem__, n_boot=0, metrics=["r3"])


def test_reliable_asymmetry_fit_recovers_planted_slope():
    # reliable voxels (cc 0.5, left half of the voxel order) carry an asymmetry growing by
    # 0.01 per decade; the unreliable ones (cc 0.05) an opposite one that the all-voxel fit
    # mixes in
    from lmbrain.aggregate import SCORE_COLUMNS, scaling_fits

    n_vox = 80
    hemi = np.array(["L", "R"] * (n_vox // 2))
    cc = np.where(np.arange(n_vox) < n_vox // 2, 0.5, 0.05)
    rows, store = [], {}
    for i, n_params in enumerate([1e6, 1e7, 1e8]):
        for subject in ("S1", "S2"):
            r = np.full(n_vox, 0.2)
            reliable = cc == 0.5
            r[reliable & (hemi == "L")] += 0.01 * i
            r[~reliable & (hemi == "R")] += 0.03 * i
            path = f"{subject}/m{i}.npz"
            r_norm = normalized_r(r, cc, 0.1)
            store[path] = {"r": r, "r_norm": r_norm, "cc_max": cc, "hemisphere": hemi}
            row = {c: 0 for c in SCORE_COLUMNS}
            row.update(
                dataset="ds", subject=subject, model=f"m{i}", family="f", untrained=False,
                n_params=n_params, layer=1, n_layers=1, train_fraction=1.0, n_train_trs=10,
                n_voxels=n_vox, mean_r=r.mean(), mean_r_left=r[hemi == "L"].mean(),
                mean_r_right=r[hemi == "R"].mean(), mean_cv_score=0.1, fit_path=path,
                **paper_summaries(r, r_norm, hemi, cc, 0.5),
            )  # fmt: skip
            rows.append(row)
    fits = scaling_fits(pd.DataFrame(rows), store.__getitem__, n_boot=50, metrics=["reliable"])
    asym = fits[fits["fit"] == "asymmetry"].set_index("y_variable")
    assert asym.loc["mean_r_reliable_left_minus_right", "slope"] == pytest.approx(0.01)
    # all voxels: left +0.005 per decade, right +0.015: slope -0.01
    assert asym.loc["mean_r_left_minus_right", "slope"] == pytest.approx(-0.01)
    row = asym.loc["mean_r_reliable_left_minus_right"]
    # noise-free voxels: the interval collapses onto the planted slope (float32 arrays)
    assert row["slope_ci_low_voxels"] == pytest.approx(0.01, abs=1e-6)
    assert row["slope_ci_high_voxels"] == pytest.approx(0.01, abs=1e-6)
