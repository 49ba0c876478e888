"""End to end: the workflow reads the three public datasets in their published layouts.

One workflow run (one tiny model, one layer, one train fraction) covers small copies of
LeBel et al. (hemispheres from the release's pycortex mask), Le Petit Prince (volumes, the
average subject, the inter-subject ceiling) and Narratives (fsaverage-style surface data, a
subject missing a story). The planted word-rate signal must come out as positive scores.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import dataset_fixtures as fx  # noqa: E402
from test_workflow import run_snakemake  # noqa: E402

from lmbrain.testing import make_tiny_model  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def public_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("public")
    fx.make_lebel(root / "ds003020")
    fx.make_lpp(root / "ds003643")
    fx.make_narratives(root / "ds002345")
    make_tiny_model(root / "gpt2", arch="gpt2", hidden_size=32, n_layers=2, seed=0)
    config = {
        "seed": 0,
        "datasets": {
            "lebel": {"format": "lebel", "path": str(root / "ds003020")},
            "lpp": {
                "format": "lpp",
                "path": str(root / "ds003643"),
                "average_subject": True,
                "subjects": ["sub-EN057", "average"],
                "ceiling": {"n_splits": 5},
            },
            "narratives": {
                "format": "narratives",
                "path": str(root / "ds002345"),
                "surface": True,
                "space": "fsaverage6",
                "mesh": "fsaverage6",
                "subjects": ["sub-001", "sub-004"],
            },
        },
        "models": [{"name": "tiny-gpt2", "model": str(root / "gpt2"), "family": "gpt2"}],
        "layers": [1],
        "train_fractions": [1.0],
        "features": {"context_tokens": 16, "stride_tokens": 16, "batch_size": 16, "threads": 1},
        "fitting": {"alphas": {"logspace": [0, 4, 5]}, "n_folds": 3},
        "aggregate": {"n_bootstrap": 20},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    res = run_snakemake(root, "--cores", "2")
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    return root, res.stdout + res.stderr


def scores(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / "results" / name / "summary" / "scores.tsv", sep="\t")


def test_planted_signal_comes_out(public_run):
    root, _ = public_run
    for name, n_rows in [("lebel", 2), ("lpp", 2), ("narratives", 2)]:
        table = scores(root, name)
        assert len(table) == n_rows, name
        assert (table["mean_r"] > 0.3).all(), (name, table["mean_r"].tolist())


def test_alignment_check_finds_the_published_timing(public_run):
    """On by default for real datasets: every fixture's words are on the responses' clock."""
    root, out = public_run
    for name, subjects in [
        ("lebel", {"UTS01", "UTS02"}),
        ("lpp", {"sub-EN057", "average"}),  # the fixture config's subjects
        ("narratives", {"sub-001", "sub-004"}),
    ]:
        table = pd.read_csv(root / "results" / name / "summary" / "alignment.tsv", sep="\t")
        assert {"subject", "lag_s", "lag_trs", "mean_r", "n_voxels", "features"} <= set(table)
        assert set(table["subject"]) == subjects and (table["n_voxels"] > 0).all()
        tr = float((table["lag_s"] / table["lag_trs"]).dropna().median())
        mean = table.groupby("lag_s")["mean_r"].mean()
        assert abs(mean.idxmax()) <= tr + 1e-6, (name, mean.round(3).to_dict())
        assert mean.max() > 0.3 and mean.min() < mean.max() - 0.2, name
        png = (root / "results" / name / "plots" / "alignment.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "misaligned" not in out


def test_lebel_hemispheres_from_the_pycortex_mask(public_run):
    root, _ = public_run
    table = scores(root, "lebel")
    assert table["mean_r_left"].notna().all() and table["mean_r_right"].notna().all()
    vox = np.load(
        root / "results" / "lebel" / "fits" / "UTS02" / "tiny-gpt2" / "layer-1_frac-1.npz"
    )
    # brute force: the fixture's mask voxels in pycortex (z, y, x) order, world x < 0 is left
    mask = nib.load(
        root / "ds003020/derivative/pycortex-db/UTS02/transforms/UTS02_auto/mask_thick.nii.gz"
    )
    ijk = np.argwhere(np.asarray(mask.dataobj).T > 0)[:, ::-1]
    x = ijk @ mask.affine[0, :3] + mask.affine[0, 3]
    assert vox["r"].shape == (40,)
    np.testing.assert_array_equal(vox["hemisphere"], np.where(x < 0, "L", "R"))
    # UTS02 lacks 'avatar' in the release: fitted on the stories it has, skip in the manifest
    row = table.set_index("subject").loc["UTS02"]
    assert "avatar" not in row["train_stories"]
    manifest = json.loads((root / "results/lebel/manifest/subjects/UTS02.json").read_text())
    assert manifest["skipped"] == [
        {"subject": "UTS02", "story": "avatar", "reason": "no response file"}
    ]


def test_lpp_average_subject_and_isc_ceiling(public_run):
    root, _ = public_run
    table = scores(root, "lpp").set_index("subject")
    assert table.loc["average", "mean_r"] > table.loc["sub-EN057", "mean_r"]
    assert table["mean_r_left"].notna().all() and table["mean_r_right"].notna().all()
    for subject in ["sub-EN057", "average"]:
        cc = np.load(root / "results" / "lpp" / "ceilings" / f"{subject}.npz")["cc_max"]
        assert np.isfinite(cc).mean() > 0.9
    single = np.load(root / "results/lpp/ceilings/sub-EN057.npz")["cc_max"]
    group = np.load(root / "results/lpp/ceilings/average.npz")["cc_max"]
    assert np.nanmean(group) > np.nanmean(single)
    assert table["n_voxels_ceiling"].min() > 40


def test_narratives_missing_story_is_reported(public_run):
    root, out = public_run
    manifest = json.loads((root / "results/narratives/manifest/subjects/sub-004.json").read_text())
    assert manifest["subjects"]["sub-004"]["missing_stories"] == ["lucy", "milkywayoriginal"]
    assert {"subject": "sub-004", "story": "lucy", "reason": "no run in space-fsaverage6"} in (
        manifest["skipped"]
    )
    assert manifest["timing_corrections"][0]["scan"] == "sub-004_task-milkyway"
    table = scores(root, "narratives").set_index("subject")
    assert table.loc["sub-004", "n_train_stories"] == 2
    assert table.loc["sub-001", "n_train_stories"] == 3
    assert table.loc["sub-004", "train_stories"] == "milkywayvodka,pieman"
    assert (table["test_stories"] == "tunnel").all()
    vox = np.load(root / "results/narratives/fits/sub-001/tiny-gpt2/layer-1_frac-1.npz")
    assert list(vox["hemisphere"]) == ["L"] * 30 + ["R"] * 30


def test_leave_one_run_out_through_the_workflow(public_run, tmp_path):
    """fitting.cv changes the ceilings and fits only: the features are reused."""
    root, _ = public_run
    work = tmp_path / "loro"
    shutil.copytree(root / "results" / "lpp", work / "results" / "lpp")
    shutil.copytree(root / ".snakemake", work / ".snakemake", symlinks=True)
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["datasets"] = {"lpp": config["datasets"]["lpp"]}
    config["fitting"]["cv"] = "leave_one_run_out"
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    # the score table only: its fits and ceilings are what the cv changes (maps and figures
    # would follow them, at twice this test's cost, and are covered by the fixture's run)
    res = run_snakemake(work, "results/lpp/summary/scores.tsv", "--cores", "2")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    assert "rule extract_features" not in out and "rule fit_encoding_model" in out
    table = scores(work, "lpp").set_index("subject")
    assert (table["cv"] == "leave_one_run_out").all() and (table["n_outer_folds"] == 4).all()
    assert (table["test_stories"] == "run-1,run-2,run-3,run-4").all()
    assert (table["mean_r"] > 0.3).all() and table["n_voxels_ceiling"].min() > 40
