"""Workflow-catalog conventions: LICENSE, CHANGELOG.md and the README's table of contents."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
TOC_START, TOC_END = "<!-- toc -->", "<!-- /toc -->"


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def sections(markdown: str) -> list[str]:
    """The ``## `` headings of a markdown text, outside code blocks."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            out.append(line[3:].strip())
    return out


def toc(markdown: str) -> list[tuple[str, str]]:
    """``(text, anchor)`` of the links between the toc markers."""
    block = markdown.split(TOC_START, 1)[1].split(TOC_END, 1)[0]
    return re.findall(r"\[([^\]]+)\]\(#([^)]+)\)", block)


def test_readme_toc_lists_every_section():
    readme = (ROOT / "README.md").read_text()
    assert TOC_START in readme and TOC_END in readme
    listed = toc(readme)
    headings = [h for h in sections(readme) if h != "Contents"]
    assert [text for text, _ in listed] == headings
    assert [link for _, link in listed] == [anchor(h) for h in headings]


def test_toc_helpers():
    assert anchor("Trial-based datasets (images and captions, NSD-style)") == (
        "trial-based-datasets-images-and-captions-nsd-style"
    )
    text = "intro\n<!-- toc -->\n- [A b](#a-b)\n<!-- /toc -->\n## A b\n```\n## not\n```\n## C\n"
    assert sections(text) == ["A b", "C"]
    assert toc(text) == [("A b", "a-b")]


def test_license_is_the_one_pyproject_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_changelog_has_the_current_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{version}]" in changelog
