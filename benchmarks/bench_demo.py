"""The README's demo from a fresh clone: wall time, CPU seconds per rule, disk per folder.

Usage::

    PYTHONPATH=src python benchmarks/bench_demo.py                # clone HEAD, run, report
    PYTHONPATH=src python benchmarks/bench_demo.py --copy         # the working tree instead
    PYTHONPATH=src python benchmarks/bench_demo.py --report DIR   # only report a finished run
    PYTHONPATH=src python benchmarks/bench_demo.py --compare DIR_A DIR_B   # same fits?

The run is the README's demo command (``snakemake --cores 2``) in a fresh clone of this
repository's HEAD (``git clone``; ``--copy`` copies the working tree, uncommitted changes
included, without ``results/``, ``resources/`` and ``.snakemake/``) in a temporary folder, so
the GGUF conversion is included and the installation is not. Printed:

- wall time of the command and the CPU seconds (user + system) of it and all its children
  (``resource.getrusage(RUSAGE_CHILDREN)``), and their ratio to the cores: on a shared
  machine the CPU seconds / cores is the wall time an idle machine would need if the jobs
  kept every core busy (a lower bound);
- per rule, from the jobs' Snakemake benchmark files (``results/<dataset>/benchmarks/<rule>/``,
  one TSV per job with ``s``, ``max_rss`` and ``cpu_time``): jobs, summed wall and CPU
  seconds, largest max RSS. Only rules with a ``benchmark:`` directive have files (extraction
  and fits); the rest is the difference to the total;
- disk use (``du -sb`` equivalent: apparent bytes of regular files) of ``results/<dataset>/``
  and ``resources/``, per sub-folder.

Snakemake samples a job's CPU time (psutil, every few seconds), so ``cpu_time`` misses the end
of a job's processes: an extraction job measured 45 CPU s there and 61 s by ``/usr/bin/time``.
The jobs run single-threaded on 2 cores, so their summed wall seconds (``sum s``) are the
better per-rule figure; the total CPU line (``getrusage``) is exact.

``--compare DIR_A DIR_B`` checks that two finished runs (e.g. before and after a change of
the solver) fitted the same thing: for every ``fits/**/*.npz`` of both, the share of voxels with
the same alpha and the largest ``|r_A - r_B|`` and ``|cv_score_A - cv_score_B|``.

Figures go into BENCHMARKS.md (*Demo workflow*) with the machine and its load.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

DEMO_COMMAND = "snakemake --cores 2"
SKIP = {"results", "resources", ".snakemake", ".git", ".pytest_cache"}


def tree_bytes(path: Path) -> int:
    """Apparent size of the regular files under ``path`` (``du -sb`` without directories)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = Path(root, name)
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def disk_report(root: Path) -> list[tuple[str, int]]:
    """``(folder, bytes)`` for ``results/<dataset>/*`` and ``resources/*``, then totals."""
    rows = []
    for top in ("results", "resources"):
        base = root / top
        if not base.is_dir():
            continue
        # results/<dataset>/<folder>; resources/<folder>
        parents = [d for d in sorted(base.iterdir()) if d.is_dir()] if top == "results" else [base]
        for parent in parents:
            for child in sorted(parent.iterdir()):
                rows.append((str(child.relative_to(root)), tree_bytes(child)))
        rows.append((f"{top}/ (total)", tree_bytes(base)))
    return rows


def rule_report(root: Path) -> dict[str, dict]:
    """Per rule: jobs, summed ``s`` and ``cpu_time``, largest ``max_rss`` (MB)."""
    table: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "s": 0.0, "cpu": 0.0, "rss": 0.0})
    for bench in sorted((root / "results").glob("*/benchmarks")):
        for tsv in sorted(bench.rglob("*.tsv")):
            rule = tsv.relative_to(bench).parts[0]
            with tsv.open() as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    entry = table[rule]
                    entry["jobs"] += 1
                    entry["s"] += _number(row.get("s"))
                    entry["cpu"] += _number(row.get("cpu_time"))
                    entry["rss"] = max(entry["rss"], _number(row.get("max_rss")))
    return dict(table)


def job_report(root: Path, rule: str) -> list[tuple[str, float, float, float]]:
    """``(job, s, cpu_time, max_rss)`` of every job of one rule, slowest first."""
    rows = []
    for bench in sorted((root / "results").glob("*/benchmarks")):
        for tsv in sorted((bench / rule).rglob("*.tsv")):
            with tsv.open() as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    rows.append(
                        (
                            str(tsv.relative_to(bench / rule).with_suffix("")),
                            _number(row.get("s")),
                            _number(row.get("cpu_time")),
                            _number(row.get("max_rss")),
                        )
                    )
    return sorted(rows, key=lambda r: -r[2])


def compare_fits(a: Path, b: Path) -> dict:
    """Alphas, test r and CV scores of the fits two finished runs share (see the docstring)."""
    import numpy as np

    files = sorted(p.relative_to(a) for p in (a / "results").glob("*/fits/**/*.npz"))
    out = {"files": 0, "voxels": 0, "same_alpha": 0, "max_dr": 0.0, "max_dcv": 0.0, "missing": 0}
    for rel in files:
        if not (b / rel).is_file():
            out["missing"] += 1
            continue
        with np.load(a / rel) as x, np.load(b / rel) as y:
            out["files"] += 1
            out["voxels"] += x["alpha"].size
            out["same_alpha"] += int((x["alpha"] == y["alpha"]).sum())
            out["max_dr"] = max(out["max_dr"], float(np.nanmax(np.abs(x["r"] - y["r"]))))
            dcv = np.abs(x["cv_score"] - y["cv_score"])
            out["max_dcv"] = max(out["max_dcv"], float(np.nanmax(dcv)))
    return out


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def prepare(src: Path, dest: Path, copy: bool) -> None:
    """A fresh clone of ``src``'s HEAD (or a copy of its working tree) at ``dest``."""
    if copy:
        shutil.copytree(src, dest, ignore=lambda d, names: [n for n in names if n in SKIP])
    else:
        subprocess.run(
            ["git", "clone", "--quiet", "--no-hardlinks", str(src), str(dest)], check=True
        )


def run_demo(root: Path, command: str) -> tuple[float, float, int]:
    """Run ``command`` in ``root``: wall seconds, CPU seconds of it and its children, exit code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root / "src")  # this copy's package, not an installed one
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    with (root / "bench_demo.log").open("w") as log:
        rc = subprocess.run(
            command, shell=True, cwd=root, env=env, stdout=log, stderr=log
        ).returncode
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, rc


def report(root: Path, cores: int, wall: float | None = None, cpu: float | None = None) -> None:
    """Print the per-rule, per-job and disk tables of a finished run at ``root``."""
    if wall is not None:
        print(f"wall: {wall:.1f} s ({wall / 60:.1f} min)")
    if cpu is not None:
        print(
            f"CPU (user+sys, all processes): {cpu:.1f} s -> {cpu / cores:.1f} s on {cores} busy cores"
        )
    rules = rule_report(root)
    print("\nrule\tjobs\tsum s\tsum cpu s\tmax RSS MB")
    for rule, e in sorted(rules.items(), key=lambda kv: -kv[1]["cpu"]):
        print(f"{rule}\t{e['jobs']}\t{e['s']:.1f}\t{e['cpu']:.1f}\t{e['rss']:.0f}")
    benched = sum(e["cpu"] for e in rules.values())
    if cpu is not None:
        print(f"(other rules, Snakemake itself)\t\t\t{cpu - benched:.1f}")
    print("\nextraction job\ts\tcpu s\tmax RSS MB")
    for job, s, c, rss in job_report(root, "extract_features"):
        print(f"{job}\t{s:.1f}\t{c:.1f}\t{rss:.0f}")
    print("\nfolder\tMB")
    for folder, size in disk_report(root):
        print(f"{folder}\t{size / 1e6:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=".", help="repository to clone (default: here)")
    parser.add_argument("--copy", action="store_true", help="copy the working tree, not HEAD")
    parser.add_argument("--workdir", default=None, help="where to run (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    parser.add_argument("--command", default=DEMO_COMMAND, help=f"default: {DEMO_COMMAND!r}")
    parser.add_argument("--cores", type=int, default=2, help="cores the command uses")
    parser.add_argument("--report", default=None, help="only report a finished run's folder")
    parser.add_argument("--compare", nargs=2, metavar="DIR", help="compare two runs' fits")
    args = parser.parse_args()
    if args.compare:
        c = compare_fits(*(Path(d) for d in args.compare))
        print(
            f"{c['files']} fit files in both ({c['missing']} only in the first); alphas "
            f"identical on {c['same_alpha']} of {c['voxels']} voxels; max |dr| {c['max_dr']:.2e}; "
            f"max |d cv_score| {c['max_dcv']:.2e}"
        )
        return
    if args.report:
        report(Path(args.report), args.cores)
        return
    src = Path(args.src).resolve()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="bench_demo_"))
    root = base / "lmbrain"
    rc = 1
    try:
        prepare(src, root, args.copy)
        print(f"running {args.command!r} in {root}", flush=True)
        wall, cpu, rc = run_demo(root, args.command)
        if rc:
            print(f"the command failed (exit {rc}); see {root / 'bench_demo.log'}", file=sys.stderr)
        report(root, args.cores, wall, cpu)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
        elif args.keep:
            print(f"\nkept: {root}")
    if rc:
        sys.exit(rc)


if __name__ == "__main__":
    main()
