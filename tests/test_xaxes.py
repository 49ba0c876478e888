"""Model metadata as x-axes of the scaling fits, checkpoint series, the best-layer table and
the asymmetry-by-depth figure, against planted truth (issue 13)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lmbrain.aggregate import SCORE_COLUMNS, scaling_fits
from lmbrain.config import validate_config
from lmbrain.errors import ConfigError
from lmbrain.features import feature_id, feature_spec
from lmbrain.layer_table import best_layer_table, read_voxel_best_layer_rows
from lmbrain.models import model_id
from lmbrain.voxel_layers import write_voxel_best_layer_maps
from lmbrain.xvariables import (
    add_metadata_columns,
    model_metadata,
    parse_x_variables,
    without_metadata,
)

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = ("S1", "S2", "S3", "S4")
N_VOX = 60


def _row(subject, model, layer, n_layers, y, cv, path, left=None, right=None, fraction=1.0):
    row = dict.fromkeys(SCORE_COLUMNS, 0)
    row.update(
        dataset="ds",
        subject=subject,
        model=model,
        family="f",
        untrained=False,
        n_params=1e8,
        n_layers=n_layers,
        layer=layer,
        depth=layer / n_layers,
        train_fraction=fraction,
        n_train_stories=3,
        n_train_trs=100,
        n_voxels=N_VOX,
        mean_r=y,
        mean_r_left=y if left is None else left,
        mean_r_right=y if right is None else right,
        mean_cv_score=cv,
        fit_path=path,
    )
    return row


def _planted_models(x_of, intercept, slope, log, missing=(), rng_seed=0):
    """One best layer per (subject, model); mean_r = intercept + slope_s * f(x) + offset_s.

    Every voxel's r is the point's value plus noise shared by all models of a subject
    (paired), so the voxel bootstrap has real spread but the slope is exact.
    """
    rng = np.random.default_rng(rng_seed)
    shared = {s: rng.normal(0, 0.02, N_VOX) for s in SUBJECTS}
    offsets = dict(zip(SUBJECTS, rng.normal(0, 0.01, len(SUBJECTS)), strict=True))
    jitter = rng.normal(0, 0.01 * abs(slope), len(SUBJECTS))  # subjects' own slopes,
    jitter = dict(zip(SUBJECTS, jitter - jitter.mean(), strict=True))  # averaging to `slope`
    rows, store = [], {}
    for model, x in x_of.items():
        fx = np.log10(x) if log else x
        for subject in SUBJECTS:
            y = intercept + (slope + jitter[subject]) * fx + offsets[subject]
            if model in missing:
                y = 0.9  # far off the line: would ruin the slope if it were included
            r = y + shared[subject] - shared[subject].mean()
            path = f"{subject}/{model}.npz"
            store[path] = {"r": r, "hemisphere": np.array(["L", "R"] * (N_VOX // 2))}
            rows.append(_row(subject, model, 1, 1, float(r.mean()), 0.1, path))
    return pd.DataFrame(rows), store


# --------------------------------------------------------------------------- x-variables


def test_perplexity_fit_recovers_planted_log_slope():
    ppl = {"a": 40.0, "b": 25.0, "c": 16.0, "d": 10.0}
    scores, store = _planted_models(ppl, 0.5, -0.2, log=True)
    scores = add_metadata_columns(scores, {m: {"perplexity": v} for m, v in ppl.items()})
    fits = scaling_fits(scores, store.__getitem__, n_boot=200, x_variables=["perplexity"])
    row = fits[fits["fit"] == "perplexity"].iloc[0]
    assert row["x_variable"] == "meta_perplexity" and row["x_scale"] == "log10"
    assert row["y_variable"] == "mean_r" and row["group"] == "trained"
    assert row["slope"] == pytest.approx(-0.2, abs=1e-9)
    assert row["slope_ci_low"] <= -0.2 <= row["slope_ci_high"]
    assert row["n_points"] == 4 and row["n_subjects"] == 4 and row["note"] == ""
    assert row["slope_t_p"] < 0.01  # every subject has the planted slope
    # the params fit is there too, unchanged by the metadata fit
    params = fits[fits["fit"] == "params"].iloc[0]
    assert params["x_variable"] == "n_params" and params["x_scale"] == "log10"


def test_linear_axis_fits_x_itself():
    score = {"a": 0.30, "b": 0.45, "c": 0.60, "d": 0.80}
    scores, store = _planted_models(score, 0.1, 0.25, log=False)
    scores = add_metadata_columns(scores, {m: {"hellaswag": v} for m, v in score.items()})
    xvars = [{"name": "hellaswag", "log": False}]
    fits = scaling_fits(scores, store.__getitem__, n_boot=50, x_variables=xvars)
    row = fits[fits["fit"] == "hellaswag"].iloc[0]
    assert row["x_scale"] == "linear"
    assert row["slope"] == pytest.approx(0.25, abs=1e-9)
    # independent: least squares on the subject-mean points
    points = scores.groupby("model")[["meta_hellaswag", "mean_r"]].mean()
    slope, intercept = np.polyfit(points["meta_hellaswag"], points["mean_r"], 1)
    assert row["slope"] == pytest.approx(slope) and row["intercept"] == pytest.approx(intercept)


def test_model_without_the_metadata_is_left_out_and_named():
    ppl = {"a": 40.0, "b": 25.0, "c": 16.0, "nometa": 12.0}
    scores, store = _planted_models(ppl, 0.5, -0.2, log=True, missing=("nometa",))
    meta = {m: {"perplexity": v} for m, v in ppl.items() if m != "nometa"}
    scores = add_metadata_columns(scores, meta)
    assert scores.loc[scores["model"] == "nometa", "meta_perplexity"].isna().all()
    fits = scaling_fits(scores, store.__getitem__, n_boot=50, x_variables=["perplexity"])
    row = fits[fits["fit"] == "perplexity"].iloc[0]
    assert row["slope"] == pytest.approx(-0.2, abs=1e-9)
    assert row["n_points"] == 3
    assert "left out (no metadata 'perplexity'): nometa" in row["note"]
    assert fits[fits["fit"] == "params"].iloc[0]["n_points"] == 4  # params: every model


def test_x_variables_are_canonical_and_checked():
    meta = {"a": {"perplexity": 20.0, "step": 0.0}, "b": {"perplexity": 10.0, "step": 1000.0}}
    got = parse_x_variables(["step" and {"name": "step", "log": False}, "perplexity"], meta)
    assert got == [
        {"name": "params", "log": True},
        {"name": "perplexity", "log": True},
        {"name": "step", "log": False},
    ]
    assert parse_x_variables([{"name": "step", "log": False}, "perplexity"]) == got
    with pytest.raises(ConfigError, match=r"models\[a\]\.metadata\.step.*log: false"):
        parse_x_variables(["step"], meta)  # step 0 has no log10
    with pytest.raises(ConfigError, match="aggregate.x_variables.*no model"):
        parse_x_variables(["hellaswag"], meta)
    with pytest.raises(ConfigError, match="listed twice"):
        parse_x_variables(["perplexity", {"name": "perplexity", "log": False}])
    with pytest.raises(ConfigError, match="params is fitted on a log10 axis"):
        parse_x_variables([{"name": "params", "log": False}])


BASE = {"datasets": {"d": {"path": "/nonexistent"}}}


@pytest.mark.parametrize(
    ("models", "aggregate", "key"),
    [
        (
            [{"model": "gpt2", "metadata": {"perplexity": "low"}}],
            {},
            "models.0.metadata.perplexity",
        ),
        ([{"model": "gpt2", "metadata": {"bad-key": 1}}], {}, "models.0.metadata"),
        ([{"model": "gpt2", "metadata": {"data": 1}}], {}, "models.0.metadata"),
        ([{"model": "gpt2"}], {"x_variables": ["asymmetry"]}, "aggregate.x_variables.0"),
        ([{"model": "gpt2"}], {"x_variables": [{"name": "ppl"}]}, "aggregate.x_variables.0"),
    ],
)
def test_schema_rejects_bad_metadata(models, aggregate, key):
    with pytest.raises(ConfigError) as info:
        validate_config({**BASE, "models": models, "aggregate": aggregate})
    assert info.value.key.startswith(key)


# --------------------------------------------------------------------------- checkpoints


def _readme_checkpoint_example() -> list[dict]:
    """The checkpoint-series YAML of README's "Add a model" (the block naming step1000)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    (block,) = [b for b in blocks if "step1000" in b]
    return yaml.safe_load(block)


def test_readme_checkpoint_series_validates_with_distinct_ids():
    example = _readme_checkpoint_example()
    cfg = validate_config({**BASE, **example})
    entries = cfg["models"]
    ids = [model_id(e) for e in entries]
    assert len(set(ids)) == len(ids) >= 3
    features = {"context_tokens": 256, "stride_tokens": None, "storage_dtype": "float32"}
    fids = [feature_id(feature_spec(e, features)) for e in entries]
    assert len(set(fids)) == len(fids)  # one feature file per revision
    meta = model_metadata(entries, ids)
    assert all("training_tokens" in m for m in meta.values())
    parse_x_variables(cfg["aggregate"]["x_variables"], meta)  # the README's axes are valid


def test_revision_separates_unnamed_model_ids():
    a = model_id({"model": "EleutherAI/pythia-70m", "revision": "step1000"})
    b = model_id({"model": "EleutherAI/pythia-70m", "revision": "step143000"})
    assert a == "EleutherAI--pythia-70m-rev-step1000" and a != b
    assert model_id({"model": "EleutherAI/pythia-70m"}) == "EleutherAI--pythia-70m"
    assert model_id({"model": "x/y", "revision": "main", "name": "keep"}) == "keep"


def test_metadata_changes_no_feature_id_and_no_fit_entry():
    features = {"context_tokens": 256, "stride_tokens": None, "storage_dtype": "float32"}
    plain = {"model": "EleutherAI/pythia-70m", "revision": "step1000"}
    tagged = {**plain, "metadata": {"training_tokens": 2.1e9, "step": 1000}}
    changed = {**plain, "metadata": {"training_tokens": 9.9e9, "step": 1000}}
    fids = {feature_id(feature_spec(e, features)) for e in (plain, tagged, changed)}
    assert len(fids) == 1
    assert model_id(tagged) == model_id(changed) == model_id(plain)
    # the rules' `entry` params (rules/common.smk MODELS) are the entries without metadata
    assert without_metadata(tagged) == without_metadata(changed) == plain


# --------------------------------------------------------------------------- best layers


def _layer_scores():
    """Per subject a planted best layer by CV score (not the best by test score)."""
    planted = {"S1": 2, "S2": 3, "S3": 2}
    n_layers, rows = 4, []
    for subject, best in planted.items():
        for layer in range(n_layers + 1):
            cv = 0.3 - 0.05 * abs(layer - best)
            test = 0.2 + 0.01 * layer  # the test score alone would pick the last layer
            rows.append(_row(subject, "m", layer, n_layers, test, cv, f"{subject}/{layer}.npz"))
    return pd.DataFrame(rows), planted, n_layers


def test_best_layer_table_picks_the_planted_layers():
    scores, planted, n_layers = _layer_scores()
    scores = add_metadata_columns(scores, {"m": {"perplexity": 12.5}})
    table = best_layer_table(scores)
    subjects = table[table["subject"] != "mean"].set_index("subject")
    for subject, best in planted.items():
        assert subjects.loc[subject, "best_layer"] == best
        assert subjects.loc[subject, "best_depth"] == pytest.approx(best / n_layers)
        assert subjects.loc[subject, "mean_r"] == pytest.approx(0.2 + 0.01 * best)
    (mean,) = table[table["subject"] == "mean"].to_dict("records")
    assert mean["best_layer"] == pytest.approx(np.mean(list(planted.values())))
    depths = [b / n_layers for b in planted.values()]
    assert mean["best_depth"] == pytest.approx(np.mean(depths))
    assert mean["best_depth_sem"] == pytest.approx(np.std(depths, ddof=1) / np.sqrt(3))
    assert mean["n_subjects"] == 3 and mean["n_voxels"] == 3 * N_VOX
    assert mean["meta_perplexity"] == 12.5
    assert list(table["subject"]) == ["S1", "S2", "S3", "mean"]


def test_best_layer_table_reads_the_per_voxel_depths(tmp_path):
    """The map job's per-voxel best layers (planted per voxel) reach the table."""
    scores, planted, n_layers = _layer_scores()
    rng = np.random.default_rng(3)
    maps, expected = [], {}
    for subject in planted:
        fits_dir = tmp_path / "fits" / subject / "m"
        fits_dir.mkdir(parents=True)
        voxel_best = rng.integers(0, n_layers + 1, N_VOX)
        fits = []
        for layer in range(n_layers + 1):
            cv = np.where(voxel_best == layer, 0.5, 0.1) + rng.uniform(0, 0.01, N_VOX)
            path = fits_dir / f"layer-{layer}_frac-1.npz"
            hemi = np.array(["L", "R"] * (N_VOX // 2))
            np.savez(path, r=rng.normal(0.1, 0.05, N_VOX), cv_score=cv, hemisphere=hemi)
            path.with_suffix(".json").write_text(f'{{"n_layers": {n_layers}}}')
            fits.append(path)
        folder = tmp_path / "maps" / subject / "m"
        folder.mkdir(parents=True)
        write_voxel_best_layer_maps(fits, None, folder)
        maps.append(folder)
        expected[subject] = (np.mean(voxel_best / n_layers), np.median(voxel_best / n_layers))
    voxels = read_voxel_best_layer_rows(maps)
    assert len(voxels) == 3
    table = best_layer_table(scores, voxels).set_index("subject")
    for subject, (mean, median) in expected.items():
        assert table.loc[subject, "voxel_mean_best_depth"] == pytest.approx(mean, abs=1e-5)
        assert table.loc[subject, "voxel_median_best_depth"] == pytest.approx(median, abs=1e-5)
        assert table.loc[subject, "voxel_n_voxels"] == N_VOX
    means = [m for m, _ in expected.values()]
    assert table.loc["mean", "voxel_mean_best_depth"] == pytest.approx(np.mean(means), abs=1e-5)
    assert table.loc["mean", "voxel_n_voxels"] == 3 * N_VOX


# --------------------------------------------------------------------------- figure


def test_asymmetry_depth_plot_draws_one_line_per_model(tmp_path):
    from lmbrain import plotting

    rows = []
    for model in ("m1", "m2"):
        for subject in SUBJECTS[:2]:
            for layer in range(3):
                left, right = 0.1 + 0.02 * layer, 0.1
                rows.append(_row(subject, model, layer, 2, 0.1, 0.1, "x", left=left, right=right))
    scores = pd.DataFrame(rows)
    fig = plotting._per_dataset(
        scores, lambda ax, ds: plotting._draw_asym_depth_panel(ax, ds, scores=scores)
    )
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) >= {"m1", "m2"}
    np.testing.assert_allclose(lines["m1"].get_xdata(), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(lines["m1"].get_ydata(), [0.0, 0.02, 0.04])
    plotting.plot_asymmetry_depth(scores, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 0


# --------------------------------------------------------------------------- workflow


@pytest.mark.slow
def test_editing_metadata_reruns_the_aggregates_only(tmp_path):
    """`--touch` records every job's params without running it; after editing one model's
    perplexity, `--list-params-changes` names the aggregate outputs and nothing else (no
    feature file, fit or map)."""
    import os
    import subprocess
    import sys

    from lmbrain.testing import make_tiny_model

    make_tiny_model(tmp_path / "gpt2", arch="gpt2", hidden_size=32, n_layers=2, seed=0)
    stories = ["01_farm", "02_fog", "03_kitchen", "04_train", "12_lighthouse"]
    simulate = {"seed": 1, "n_subjects": 1, "voxels_per_hemisphere": 4, "n_repeats": 2}
    model = {"model": str(tmp_path / "gpt2"), "layers": [-1], "family": "gpt2"}
    cfg = {
        "datasets": {"tiny": {"simulate": {**simulate, "stories": stories}}},
        "models": [
            {**model, "name": "g", "metadata": {"perplexity": 20.0}},
            {**model, "name": "g4", "context_tokens": 4, "metadata": {"perplexity": 30.0}},
        ],
        "train_fractions": [1.0],
        "features": {"context_tokens": 8, "stride_tokens": 8, "threads": 1},
        "aggregate": {"n_bootstrap": 10, "x_variables": ["perplexity"]},
    }
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    cfg["models"][0]["metadata"]["perplexity"] = 25.0
    (workdir / "changed.yaml").write_text(yaml.safe_dump(cfg))

    def snakemake(config, *args):
        cmd = [str(Path(sys.executable).with_name("snakemake")), *args, "--cores", "1"]
        cmd += ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
        cmd += ["--configfile", str(workdir / config)]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        return {line for line in res.stdout.splitlines() if line.startswith("results/")}

    snakemake("config.yaml", "--touch")
    assert snakemake("config.yaml", "--list-params-changes") == set()
    assert snakemake("changed.yaml", "--list-params-changes") == {
        "results/tiny/summary/scores.tsv",
        "results/tiny/summary/scaling_fits.tsv",
        "results/tiny/summary/config.yaml",
    }


def test_asymmetry_is_fitted_against_metadata_too():
    """Left - right planted to grow linearly with the training step (step 0 included)."""
    steps = {"s0": 0.0, "s1": 1000.0, "s2": 36000.0, "s3": 143000.0}
    rng = np.random.default_rng(5)
    hemi = np.array(["L", "R"] * (N_VOX // 2))
    rows, store = [], {}
    for model, step in steps.items():
        for subject in SUBJECTS:
            noise = rng.normal(0, 0.01, N_VOX)
            r = 0.1 + noise - noise.mean() + np.where(hemi == "L", 1e-7 * step, 0.0)
            path = f"{subject}/{model}.npz"
            store[path] = {"r": r, "hemisphere": hemi}
            left, right = float(r[hemi == "L"].mean()), float(r[hemi == "R"].mean())
            rows.append(_row(subject, model, 1, 1, float(r.mean()), 0.1, path, left, right))
    scores = add_metadata_columns(pd.DataFrame(rows), {m: {"step": v} for m, v in steps.items()})
    xvars = [{"name": "step", "log": False}]
    fits = scaling_fits(scores, store.__getitem__, n_boot=100, x_variables=xvars)
    step_fits = fits[fits["fit"] == "step"].set_index("y_variable")
    asym = step_fits.loc["mean_r_left_minus_right"]
    # independent: least squares of the subject-mean left - right on the steps
    y = scores.assign(d=scores["mean_r_left"] - scores["mean_r_right"]).groupby("model")["d"]
    slope = np.polyfit(scores.groupby("model")["meta_step"].first(), y.mean(), 1)[0]
    assert asym["slope"] == pytest.approx(slope) and slope == pytest.approx(1e-7, rel=0.05)
    assert asym["slope_ci_low"] <= slope <= asym["slope_ci_high"]
    assert asym["n_points"] == 4 and asym["x_scale"] == "linear"  # step 0 is kept
    assert "mean_r" in step_fits.index
