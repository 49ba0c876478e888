"""Each paper preset (config/papers/*.yaml) dry-runs on its dataset's published layout.

The presets name their models by hub name, which cannot be loaded offline: the test rewrites
a copy of each preset with every language model (trained or untrained) replaced by one tiny
local model under the same name and family, points the dataset at the published-layout
fixture (tests/dataset_fixtures.py, tests/test_nsd_dataset.py) and checks the job counts of
``snakemake -n`` against what the preset asks for.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import dataset_fixtures as fx  # noqa: E402
from test_workflow import run_snakemake  # noqa: E402

from lmbrain.testing import job_counts, make_tiny_model  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ROOT / "config" / "papers"
N_LAYERS = 2  # tiny model: hidden states 0..2, so `layers: all` fits 3 of them


def _lm_id(entry: dict) -> str:
    return entry.get("name") or entry["model"].rsplit("/", 1)[-1]


def rewrite(preset: str, tiny: Path, dataset: dict) -> tuple[dict, list[dict]]:
    """The preset with tiny models and the fixture's dataset; also its language models."""
    config = yaml.safe_load((PAPERS / preset).read_text())
    lms = []
    for entry in config["models"]:
        if "model" in entry:
            lms.append(dict(entry))
            entry["name"] = _lm_id(entry)
            entry["model"] = str(tiny)
    for spec in config["datasets"].values():
        for baseline in spec.get("trials", {}).get("baselines", []):
            if "model" in baseline:
                baseline["model"] = str(tiny)
    name = next(iter(config["datasets"]))
    config["datasets"][name].update(dataset)
    config["features"] = {"context_tokens": 16, "batch_size": 4, "threads": 1}
    return config, lms


def dry_run(tmp_path: Path, config: dict) -> dict:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    res = run_snakemake(tmp_path, "-n", "--cores", "1")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return job_counts(res.stdout + res.stderr)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "gpt2"
    make_tiny_model(path, arch="gpt2", hidden_size=32, n_layers=N_LAYERS, seed=0)
    return path


def test_antonello2023(tmp_path, tiny):
    fx.make_lebel(tmp_path / "ds003020")
    subjects = ["UTS01", "UTS02"]  # the fixture's subjects
    data = {"path": str(tmp_path / "ds003020"), "subjects": subjects}
    config, lms = rewrite("antonello2023.yaml", tiny, data)
    assert config["temporal"]["delays"] == [1, 2, 3, 4]
    assert config["datasets"]["lebel"]["test_stories"] == ["wheretheressmoke"]
    assert {"signed_r2", "r2_norm"} <= set(config["aggregate"]["metrics"])
    assert {e["family"] for e in lms} == {"OPT", "LLaMA"} and len(lms) == 12
    counts = dry_run(tmp_path, config)
    # one tiny model stands in for all 12: one feature file (ids follow the content)
    assert counts["extract_features"] == 1
    assert counts["fit_encoding_model"] == len(subjects) * len(lms) * (N_LAYERS + 1)
    assert counts["brain_maps"] == len(subjects) * len(lms)
    assert counts["summarize_scores"] == counts["scaling_extrapolation"] == 1


def test_bonnasse_gahot2024(tmp_path, tiny):
    fx.make_lpp(tmp_path / "ds003643")
    config, lms = rewrite("bonnasse-gahot2024.yaml", tiny, {"path": str(tmp_path / "ds003643")})
    trained = [e for e in lms if not e.get("untrained")]
    assert len(trained) == 28 and len({e["family"] for e in trained}) == 8
    assert config["temporal"]["hrf_events"] == "boxcar"
    assert config["fitting"]["cv"] == "leave_one_run_out"
    counts = dry_run(tmp_path, config)
    n_untrained = sum(len(e.get("seeds", [0])) for e in lms if e.get("untrained"))
    n_random = 2 * 2 * 10  # random vectors and embeddings, 2 widths, 10 seeds
    # one subject (the average); every LM fits 3 hidden states, every baseline one
    n_fits = (len(trained) + n_untrained) * (N_LAYERS + 1) + n_random
    assert counts["fit_encoding_model"] == n_fits
    assert counts["brain_maps"] == len(trained) + n_untrained + n_random


def test_caucheteux2023(tmp_path, tiny):
    fx.make_narratives(tmp_path / "ds002345")
    data = {"path": str(tmp_path / "ds002345"), "subjects": ["sub-001", "sub-004"]}
    config, lms = rewrite("caucheteux2023.yaml", tiny, data)
    config["forecast"].update(layer=N_LAYERS, forecast_layers=[N_LAYERS])  # tiny model depth
    assert config["forecast"]["enabled"]
    counts = dry_run(tmp_path, config)
    assert counts["fit_encoding_model"] == 2 * (N_LAYERS + 1)
    assert counts["forecast_fit"] == 2 * len(lms)  # one per (subject, model)
    assert counts["forecast_summary"] == 1


def test_doerig(tmp_path, tiny):
    from test_nsd_dataset import make_nsd

    root, *_ = make_nsd(tmp_path / "nsd")
    config, lms = rewrite("doerig.yaml", tiny, {"path": str(root)})
    counts = dry_run(tmp_path, config)
    n_baselines = len(config["datasets"]["nsd"]["trials"]["baselines"])
    assert counts["extract_caption_features"] == len(lms)
    assert counts["baseline_features"] == n_baselines
    # subj01 and subj02 (the fixture's subjects) x (MPNet's last layer + the baselines)
    assert counts["fit_trial_model"] == 2 * (len(lms) + n_baselines)
    assert counts["trial_rsa"] == 1 and counts["trial_noise_ceiling"] == 2
    assert counts["trial_searchlight"] == 2  # one map per subject, every feature space in it
    kinds = {b["kind"] for b in config["datasets"]["nsd"]["trials"]["baselines"]}
    assert {"nouns", "verbs", "scrambled"} <= kinds
