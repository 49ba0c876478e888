"""Time and size of converting the demo's GGUF models (lmbrain.models.ensure_converted).

Usage::

    PYTHONPATH=src /usr/bin/time -v python benchmarks/bench_conversion.py [--cache DIR]

Converts each distinct GGUF entry of config/config.yaml into an empty cache folder and prints
the seconds, the folder's size and the dtype the weights were stored in (BENCHMARKS.md, *Demo
disk*).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from lmbrain.models import ensure_converted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--cache", default=None, help="cache folder (default: a temporary one)")
    args = parser.parse_args()
    cache = Path(args.cache or tempfile.mkdtemp(prefix="bench_conversion_"))
    entries = yaml.safe_load(Path(args.config).read_text())["models"]
    seen = set()
    try:
        for entry in entries:
            key = (entry.get("model"), entry.get("gguf_file"))
            if not entry.get("gguf_file") or key in seen:
                continue
            seen.add(key)
            start = time.perf_counter()
            out = ensure_converted(entry, cache)
            seconds = time.perf_counter() - start
            size = sum(p.stat().st_size for p in out.iterdir())
            stored = json.loads((out / "lmbrain_conversion.json").read_text())["stored_dtype"]
            print(f"{entry['gguf_file']}\t{seconds:.1f} s\t{size / 1e6:.0f} MB\t{stored}")
    finally:
        if args.cache is None:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
