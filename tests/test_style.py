"""The repository's own style gates: ruff, snakefmt and snakemake --lint."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "cmd",
    [
        [sys.executable, "-m", "ruff", "check", "."],
        [sys.executable, "-m", "ruff", "format", "--check", "."],
    ],
    ids=["ruff-check", "ruff-format"],
)
def test_ruff(cmd):
    res = run(*cmd)
    assert res.returncode == 0, res.stdout + res.stderr


def test_snakefmt():
    res = run(str(Path(sys.executable).with_name("snakefmt")), "--check", "Snakefile", "rules")
    assert res.returncode == 0, res.stdout + res.stderr


def test_snakemake_lint():
    res = run(sys.executable, "-m", "snakemake", "--lint", "--cores", "1")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Lints for" not in out, out
