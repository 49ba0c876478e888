"""Start-up cost of a workflow job: CPU seconds a fresh Python spends before its work.

Each Snakemake `script:` job is a new Python process, and the test suite's tiny workflows
run hundreds of them, so their imports, not their arithmetic, set the suite's time (issue
17, BENCHMARKS.md "Test suite"). Runs each snippet ``--repeats`` times in a fresh process and
prints the mean CPU (user + sys, of the child, less noisy than wall on a shared machine) and
wall seconds, and which heavy packages the process ended up importing.

    PYTHONPATH=src python benchmarks/bench_job_startup.py
    python benchmarks/bench_job_startup.py --src /path/to/other/checkout/src   # compare

Snippets: ``fit`` (the modules scripts/fit_encoding_model.py imports, the config check and
one small numpy ridge fit), ``snakefile`` (what rules/common.smk imports, i.e. every
Snakemake start and every Slurm job), ``python`` (a bare interpreter, for scale).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

HEAVY = ["himalaya", "sklearn", "pandas", "scipy.stats", "torch", "transformers"]
REPORT = f"import sys; print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"

SNIPPETS = {
    "python": "pass\n",
    "fit": (
        "import numpy as np\n"
        "import lmbrain.config, lmbrain.datasets, lmbrain.encoding, lmbrain.features\n"
        "import lmbrain.io, lmbrain.models, lmbrain.provenance, lmbrain.scripting\n"
        "from lmbrain.fitting import fit_ridge_cv\n"
        "rng = np.random.default_rng(0)\n"
        "fit_ridge_cv(rng.normal(size=(400, 64)), rng.normal(size=(400, 16)),\n"
        "             np.repeat(list('abcd'), 100), [1.0, 10.0, 100.0], backend='numpy')\n"
    ),
    "snakefile": (
        "import lmbrain.baselines, lmbrain.config, lmbrain.datasets, lmbrain.fetch\n"
        "import lmbrain.encoding, lmbrain.features, lmbrain.models, lmbrain.resources\n"
        "import lmbrain.snakemake_fixes\n"
    ),
}


def run_once(code: str, env: dict) -> tuple[float, float, str]:
    """(CPU s, wall s, heavy modules imported) of one fresh interpreter running ``code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", code + REPORT], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--src", help="PYTHONPATH to measure (default: as inherited)")
    parser.add_argument("snippets", nargs="*", help=f"some of {list(SNIPPETS)} (default all)")
    args = parser.parse_args()
    unknown = set(args.snippets) - set(SNIPPETS)
    if unknown:
        parser.error(f"unknown snippets {sorted(unknown)}; choose from {list(SNIPPETS)}")
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = args.src
    print(f"{'snippet':10s} {'CPU s':>6s} {'wall s':>7s}  heavy modules imported")
    for name in args.snippets or SNIPPETS:
        runs = [run_once(SNIPPETS[name], env) for _ in range(args.repeats)]
        cpu = sum(r[0] for r in runs) / len(runs)
        wall = sum(r[1] for r in runs) / len(runs)
        print(f"{name:10s} {cpu:6.2f} {wall:7.2f}  {runs[-1][2] or '-'}")


if __name__ == "__main__":
    main()
