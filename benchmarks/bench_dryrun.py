"""Dry-run time (``snakemake -n``) of a configuration at the paper's scale, with stub inputs.

The configuration has 8 subjects x 30 models x 48 layers x 5 train fractions (57,600 fits in
11,520 fit jobs, one per subject, model and layer):
the dataset is a tiny simulated one written in the native layout into a temporary folder
(8 subjects, a few voxels, 5 stories), and the models are placeholders given with
``n_layers: 48`` and ``layers: {count: 48}`` so that nothing is downloaded or read (the DAG never opens a model).

Prints the number of jobs per rule, the total, and the wall time of ``snakemake -n`` (the
time to parse the workflow, validate the config and dataset, build the DAG and print it).
Pass ``--profile FILE`` to also write a cProfile of the Snakemake process (``python -m
cProfile`` around Snakemake's entry point) and print its top functions.

Run ``python benchmarks/bench_dryrun.py`` from the repository root. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from lmbrain.testing import job_counts

ROOT = Path(__file__).resolve().parents[1]
STORIES = ["01_farm", "02_fog", "03_kitchen", "04_train", "12_lighthouse"]


def write_stub_inputs(workdir: Path, args) -> Path:
    """Tiny native dataset and the paper-scale config; returns the config path."""
    from lmbrain.demo import make_demo_dataset

    data = make_demo_dataset(
        workdir / "data",
        seed=0,
        n_subjects=args.subjects,
        voxels_per_hemisphere=4,
        n_repeats=2,
        stories=STORIES,
    )
    models = [
        {
            "name": f"model-{i:02d}",
            "model": f"org/stub-model-{i:02d}",
            "family": f"family-{i % 6}",
            "n_layers": args.layers,
        }
        for i in range(args.models)
    ]
    fractions = [round((k + 1) / args.fractions, 4) for k in range(args.fractions)]
    config = {
        "seed": 0,
        "datasets": {"paper": {"format": "native", "path": str(data)}},
        "models": models,
        "layers": {"count": args.layers},
        "train_fractions": fractions,
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def dry_run(workdir: Path, config: Path, profile: Path | None) -> tuple[float, float, str, int]:
    """Run ``snakemake -n`` once; returns (wall seconds, CPU seconds, output, return code)."""
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    cmd = [snakemake, "-n", "--quiet", "rules"]
    if profile is not None:
        cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), snakemake, *cmd[1:]]
    cmd += ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", str(config)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res.stdout + res.stderr, res.returncode


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--models", type=int, default=30)
    p.add_argument("--layers", type=int, default=48, help="n_layers of every model")
    p.add_argument("--fractions", type=int, default=5)
    p.add_argument("--profile", type=Path, help="write a cProfile of snakemake -n here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lmbrain-dryrun-") as tmp:
        workdir = Path(tmp)
        config = write_stub_inputs(workdir, args)
        n_fits = args.subjects * args.models * args.layers * args.fractions
        print(
            f"config: {args.subjects} subjects x {args.models} models x {args.layers} layers "
            f"x {args.fractions} fractions = {n_fits} fits"
        )
        seconds, cpu, out, rc = dry_run(workdir, config, args.profile)
    if rc != 0:
        print(out[-5000:])
        raise SystemExit(f"snakemake -n failed (exit {rc})")
    counts = job_counts(out, total=True)
    for rule, n in counts.items():
        print(f"  {rule:<24s} {n:>8d}")
    print(
        f"snakemake -n: {seconds:.1f} s wall, {cpu:.1f} CPU s, {counts.get('total', 0)} jobs "
        "(target < 120 s; on a shared machine the CPU seconds are the wall time it would take "
        "alone)"
    )
    if args.profile is not None:
        stats = pstats.Stats(str(args.profile))
        stats.sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
