"""Scaling fits and noise-ceiling extrapolation per ROI (lmbrain.roi_scaling), on planted truth.

Simulated subjects and models: ROI ``A`` has a planted slope of mean r against log10(params)
(steeper on the left, so its left - right asymmetry has a planted slope too), ROI ``B`` has
none. The fits must recover the planted slopes inside their CIs, the null ROI's CIs must
cover 0, and on exact-line data the extrapolation must match the closed form.
"""

import math

import numpy as np
import pandas as pd
import pytest

from lmbrain import roi as roi_mod
from lmbrain.aggregate import scaling_fits
from lmbrain.extrapolation import NOTE_FLAT
from lmbrain.roi_scaling import (
    ROI_EXTRAPOLATION_COLUMNS,
    ROI_FIT_COLUMNS,
    roi_extrapolations,
    roi_scaling_fits,
    roi_score_rows,
)

PARAMS = [1e6, 1e7, 1e8, 1e9]
SLOPE_A, ASYM_A = 0.02, 0.01  # per decade: A-left 0.025, A-right 0.015, A-both 0.02
N_PER_PART = 30  # voxels of each ROI in each hemisphere
PNG = b"\x89PNG\r\n\x1a\n"


def voxel_layout():
    """Column order of every subject: A-L, A-R, B-L, B-R (N_PER_PART each)."""
    roi = np.repeat(["A", "A", "B", "B"], N_PER_PART)
    hemi = np.repeat(["L", "R", "L", "R"], N_PER_PART)
    return roi, hemi


def planted_slopes(roi, hemi, asym=ASYM_A):
    """Each voxel's planted slope per decade of parameters."""
    slope = np.where(roi == "A", SLOPE_A, 0.0)
    return slope + np.where(roi == "A", np.where(hemi == "L", asym / 2, -asym / 2), 0.0)


def simulate(n_subjects=8, seed=0, noise=0.01, subject_sd=0.002, ceiling=0.5, exact=False):
    """Score rows, per-voxel arrays and ROI membership of planted subjects.

    Voxel r = base (per voxel) + slope * log10(params) + subject slope offset + noise;
    r_norm = r / ceiling. ``exact``: no offset, no noise, no asymmetry (every voxel of an ROI
    on the same line).
    """
    rng = np.random.default_rng(seed)
    roi, hemi = voxel_layout()
    slope = planted_slopes(roi, hemi, asym=0.0 if exact else ASYM_A)
    rows, arrays, rois = [], {}, {}
    for s in range(n_subjects):
        subject = f"sub-{s:02d}"
        rois[subject] = roi_mod.rois_from_labels(roi)
        base = 0.1 + (0 if exact else rng.normal(0, 0.03, roi.size))
        offset = 0 if exact else rng.normal(0, subject_sd)
        for m, n_params in enumerate(PARAMS):
            lx = np.log10(n_params) - 6.0
            r = base + (slope + offset) * lx
            if not exact:
                r = r + rng.normal(0, noise, roi.size)
            path = f"{subject}/m{m}.npz"
            arrays[path] = {"r": r, "r_norm": r / ceiling, "hemisphere": hemi}
            rows.append(
                {
                    "dataset": "sim",
                    "subject": subject,
                    "model": f"m{m}",
                    "family": "fam",
                    "untrained": False,
                    "n_params": int(n_params),
                    "layer": 1,
                    "depth": 1.0,
                    "train_fraction": 1.0,
                    "n_train_stories": 3,
                    "n_train_trs": 300,
                    "n_test_stories": 1,
                    "test_stories": "story_t",
                    "n_voxels": roi.size,
                    "mean_r": float(r.mean()),
                    "mean_r_left": float(r[hemi == "L"].mean()),
                    "mean_r_right": float(r[hemi == "R"].mean()),
                    "mean_r_norm": float((r / ceiling).mean()),
                    "mean_cv_score": 0.1,
                    "fit_path": path,
                }
            )
    return pd.DataFrame(rows), arrays, rois


def run_fits(scores, arrays, rois, n_boot=300, seed=3):
    roi_rows = roi_mod.roi_table(scores, rois, load_voxels=arrays.__getitem__)
    fits = roi_scaling_fits(scores, roi_rows, rois, arrays.__getitem__, n_boot=n_boot, seed=seed)
    return roi_rows, fits


def fit_row(fits, roi, hemisphere, fit="params", group="trained"):
    hit = fits[
        (fits["roi"] == roi)
        & (fits["hemisphere"] == hemisphere)
        & (fits["fit"] == fit)
        & (fits["group"] == group)
    ]
    assert len(hit) == 1, hit
    return hit.iloc[0]


@pytest.fixture(scope="module")
def planted():
    scores, arrays, rois = simulate()
    roi_rows, fits = run_fits(scores, arrays, rois)
    return scores, arrays, rois, roi_rows, fits


def test_planted_slopes_are_recovered_inside_their_cis(planted):
    *_, fits = planted
    assert list(fits.columns) == list(ROI_FIT_COLUMNS)
    truth = {
        ("A", "both", "params"): SLOPE_A,
        ("A", "L", "params"): SLOPE_A + ASYM_A / 2,
        ("A", "R", "params"): SLOPE_A - ASYM_A / 2,
        ("A", "both", "asymmetry"): ASYM_A,
        ("B", "both", "params"): 0.0,
        ("B", "L", "params"): 0.0,
        ("B", "R", "params"): 0.0,
        ("B", "both", "asymmetry"): 0.0,
    }
    for (roi, hemi, fit), slope in truth.items():
        row = fit_row(fits, roi, hemi, fit)
        for suffix in ("", "_subjects", "_voxels"):
            low, high = row[f"slope_ci_low{suffix}"], row[f"slope_ci_high{suffix}"]
            assert low < high, (roi, hemi, fit, suffix)
        assert row["slope_ci_low"] <= slope <= row["slope_ci_high"], (roi, hemi, fit, row)
        assert row["n_boot"] == 300 and row["n_subjects"] == 8 and row["note"] == ""
        if slope:  # a planted effect is found; the null ROI's CI covers 0 (above)
            assert row["slope_ci_low"] > 0 and row["slope_t_p"] < 0.01
            assert row["slope_signflip_p"] < 0.01
    # the asymmetry rows exist for both hemispheres together only
    assert set(fits.loc[fits["fit"] == "asymmetry", "hemisphere"]) == {"both"}
    assert set(fits.loc[fits["fit"] == "asymmetry", "y_variable"]) == {"mean_r_left_minus_right"}


def test_point_estimates_and_sample_sizes_against_brute_force(planted):
    scores, arrays, rois, _, fits = planted
    roi, hemi = voxel_layout()
    lx = np.log10(PARAMS)
    for name in ("A", "B"):
        for side in ("L", "R", "both"):
            keep = (roi == name) & ((hemi == side) | (side == "both"))
            # subject mean of the part's mean r per model, then an ordinary least-squares line
            y = [
                np.mean([arrays[f"{s}/m{m}.npz"]["r"][keep].mean() for s in rois])
                for m in range(len(PARAMS))
            ]
            slope, intercept = np.polyfit(lx, y, 1)
            row = fit_row(fits, name, side)
            assert row["slope"] == pytest.approx(slope, rel=1e-6, abs=1e-12)
            assert row["intercept"] == pytest.approx(intercept, rel=1e-6, abs=1e-9)
            assert row["n_voxels"] == keep.sum() * len(rois) and row["n_points"] == 4
            assert row["n_train_stories"] == 3 and row["n_test_stories"] == 1
        left, right = (roi == name) & (hemi == "L"), (roi == name) & (hemi == "R")
        y = [
            np.mean(
                [
                    arrays[f"{s}/m{m}.npz"]["r"][left].mean()
                    - arrays[f"{s}/m{m}.npz"]["r"][right].mean()
                    for s in rois
                ]
            )
            for m in range(len(PARAMS))
        ]
        row = fit_row(fits, name, "both", "asymmetry")
        assert row["slope"] == pytest.approx(np.polyfit(lx, y, 1)[0], rel=1e-6, abs=1e-12)


def test_an_roi_of_every_voxel_matches_the_whole_brain_fit():
    scores, arrays, _ = simulate(n_subjects=5, seed=4)
    everything = {s: {"all": np.ones(4 * N_PER_PART, bool)} for s in scores["subject"].unique()}
    _, fits = run_fits(scores, arrays, everything, n_boot=50)
    brain = scaling_fits(scores, arrays.__getitem__, n_boot=50, seed=3)
    for fit in ("params", "asymmetry"):
        mine = fit_row(fits, "all", "both", fit)
        theirs = brain[(brain["fit"] == fit) & (brain["group"] == "trained")].iloc[0]
        for column in ("slope", "intercept", "r2", "slope_t", "slope_t_p", "slope_signflip_p"):
            assert mine[column] == pytest.approx(theirs[column], rel=1e-5), (fit, column)
        for column in ("n_points", "n_subjects", "n_voxels", "n_train_stories", "resampling"):
            assert mine[column] == theirs[column], (fit, column)


def test_fewer_than_three_subjects_give_the_voxel_ci_and_a_note():
    scores, arrays, rois = simulate(n_subjects=2, seed=1)
    _, fits = run_fits(scores, arrays, rois, n_boot=100)
    row = fit_row(fits, "A", "L")
    assert math.isnan(row["slope_ci_low"]) and math.isnan(row["slope_t_p"])
    assert row["slope_ci_low_voxels"] < row["slope"] < row["slope_ci_high_voxels"]
    assert "need >= 3 subjects (have 2)" in row["note"]


def test_family_groups_and_reproducible_streams(planted):
    scores, arrays, rois, roi_rows, fits = planted
    assert set(fits["group"]) == {"trained", "family:fam"}
    keys = fits[["roi", "fit", "hemisphere", "group"]].values.tolist()
    assert keys[:3] == [["A", "params", "L", "trained"], ["A", "params", "L", "family:fam"],
                        ["A", "params", "R", "trained"]]  # fmt: skip
    assert keys[6] == ["A", "asymmetry", "both", "trained"]
    again = roi_scaling_fits(scores, roi_rows, rois, arrays.__getitem__, n_boot=300, seed=3)
    pd.testing.assert_frame_equal(fits, again)


def test_roi_score_rows_take_the_parts_scores(planted):
    scores, arrays, rois, roi_rows, _ = planted
    roi, hemi = voxel_layout()
    both = roi_score_rows(scores, roi_rows, "A", "both")
    first = both.iloc[0]
    r = arrays[first["fit_path"]]["r"]
    assert first["mean_r"] == pytest.approx(r[roi == "A"].mean())
    assert first["mean_r_left"] == pytest.approx(r[(roi == "A") & (hemi == "L")].mean())
    assert first["n_voxels"] == 2 * N_PER_PART and len(both) == len(scores)
    left = roi_score_rows(scores, roi_rows, "A", "L")
    assert left["mean_r_left"].isna().all() and left["n_voxels"].eq(N_PER_PART).all()
    with pytest.raises(ValueError, match="hemisphere must be one of"):
        roi_score_rows(scores, roi_rows, "A", "left")


def test_roi_extrapolation_matches_the_closed_form_on_exact_lines():
    scores, arrays, rois = simulate(n_subjects=3, exact=True, ceiling=0.5)
    roi_rows = roi_mod.roi_table(scores, rois, load_voxels=arrays.__getitem__)
    table = roi_extrapolations(
        scores, roi_rows, rois, arrays.__getitem__, n_boot=50, seed=2, target=0.9
    )
    assert list(table.columns) == list(ROI_EXTRAPOLATION_COLUMNS)
    assert list(table["roi"]) == ["A", "A", "B", "B"]  # groups "trained" and "fam"
    a = table[(table["roi"] == "A") & (table["group"] == "trained")].iloc[0]
    # r_norm = (0.1 + SLOPE_A (log10 n - 6)) / 0.5 in every voxel of A
    slope, intercept = SLOPE_A / 0.5, (0.1 - 6 * SLOPE_A) / 0.5
    assert a["slope"] == pytest.approx(slope) and a["intercept"] == pytest.approx(intercept)
    assert a["log10_x_target"] == pytest.approx((0.9 - intercept) / slope)
    assert a["x_target"] == pytest.approx(10 ** ((0.9 - intercept) / slope), rel=1e-6)
    # exact lines: every resample gives the same line
    for suffix in ("", "_subjects", "_voxels"):
        assert a[f"log10_x_target_ci_low{suffix}"] == pytest.approx(a["log10_x_target"])
        assert a[f"log10_x_target_ci_high{suffix}"] == pytest.approx(a["log10_x_target"])
    assert a["n_voxels"] == 3 * 2 * N_PER_PART and a["resampling"].startswith("subjects")
    b = table[(table["roi"] == "B") & (table["group"] == "trained")].iloc[0]
    assert b["slope"] == pytest.approx(0.0, abs=1e-12)
    assert math.isinf(b["x_target"]) and b["note"] == NOTE_FLAT


def test_empty_roi_table_gives_empty_tables():
    scores, arrays, _ = simulate(n_subjects=1)
    empty = roi_mod.roi_table(scores, {}, load_voxels=arrays.__getitem__)
    assert roi_scaling_fits(scores, empty, {}).empty
    assert list(roi_extrapolations(scores, empty, {}).columns) == list(ROI_EXTRAPOLATION_COLUMNS)


def test_scores_roi_states_its_sample(planted):
    *_, roi_rows, _ = planted
    assert roi_rows["n_subjects"].eq(1).all()
    assert roi_rows["n_train_stories"].eq(3).all() and roi_rows["n_test_stories"].eq(1).all()
    assert roi_rows["resampling"].eq(roi_mod.ROI_RESAMPLING).all()


def test_roi_slope_figure(planted, tmp_path):
    from lmbrain.mapplots import plot_roi_slopes

    *_, fits = planted
    plot_roi_slopes(fits, tmp_path / "roi_scaling.png")
    assert (tmp_path / "roi_scaling.png").read_bytes()[:8] == PNG
    plot_roi_slopes(fits.iloc[0:0], tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG


def test_roi_voxels_errors_name_the_fit():
    from lmbrain.errors import InputError
    from lmbrain.roi_scaling import RoiVoxels

    scores, arrays, rois = simulate(n_subjects=1)
    wrong = {s: {"A": np.ones(3, bool)} for s in rois}
    voxels = RoiVoxels(scores, wrong, arrays.__getitem__)
    with pytest.raises(InputError, match=r"sub-00/m0\.npz: has 120 voxels but ROI 'A'"):
        voxels.loader("A", "both")("sub-00/m0.npz")
    bare = {path: {"r": a["r"]} for path, a in arrays.items()}
    with pytest.raises(InputError, match=r"m0\.npz: per-voxel arrays lack 'r' or 'hemisphere'"):
        RoiVoxels(scores, rois, bare.__getitem__).arrays("sub-00/m0.npz")
    # a subject without the ROI contributes no voxel
    assert (
        RoiVoxels(scores, {}, arrays.__getitem__).loader("A", "L")("sub-00/m0.npz")["r"].size == 0
    )
