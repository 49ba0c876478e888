"""Every summary table and figure a rule writes is in the Snakemake report, with a caption."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOWN = re.compile(r"/(summary/[^\"'/]+\.tsv|plots/[^\"'/]+\.png|summary/config\.yaml)[\"']")


def output_blocks(text: str) -> list[str]:
    """The text of every ``output:`` directive of a rules file."""
    return re.findall(r"^( +)output:\n((?:\1 +.*\n|\s*\n)+)", text, re.M)


def unreported(rules_dir: Path) -> list[str]:
    """``file: path`` of every table or figure output not wrapped in ``report(...)``."""
    missing = []
    for smk in sorted(rules_dir.glob("*.smk")):
        for _, block in output_blocks(smk.read_text()):
            lines = block.splitlines()
            for i, line in enumerate(lines):
                for match in SHOWN.finditer(line):
                    before = (lines[i - 1] if i else "") + line[: match.start()]
                    if "report(" not in before:
                        missing.append(f"{smk.name}: {match.group(1)}")
    return missing


def captions(rules_dir: Path) -> list[str]:
    """Caption files named by ``report(..., caption=...)`` that do not exist."""
    missing = []
    for smk in sorted(rules_dir.glob("*.smk")):
        for name in re.findall(r"caption=f?[\"']\.\./report/([^\"'{]+\.rst)", smk.read_text()):
            if not (ROOT / "report" / name).is_file():
                missing.append(name)
    return missing


def test_every_table_and_figure_is_reported():
    found = unreported(ROOT / "rules")
    assert found == []


def test_captions_exist():
    assert captions(ROOT / "rules") == []


def test_unreported_output_is_found(tmp_path):
    (tmp_path / "a.smk").write_text(
        "rule a:\n    output:\n"
        '        table=f"{RESULTS}/{{dataset}}/summary/x.tsv",\n'
        "        plot=report(\n"
        '            f"{RESULTS}/{{dataset}}/plots/x.png",\n'
        '            caption="../report/x.rst",\n        ),\n'
        "    log:\n        'l'\n"
    )
    assert unreported(tmp_path) == ["a.smk: summary/x.tsv"]
