"""config/README.md lists every configuration key of the schema, and is up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("config_docs", ROOT / "tools" / "config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_readme_is_up_to_date():
    tool = load_tool()
    assert (ROOT / "config" / "README.md").read_text() == tool.render(), (
        "config/README.md is stale: python tools/config_docs.py > config/README.md"
    )


def test_every_setting_is_described():
    """Every key that takes a value (not a section or a list's items) has a description."""
    from lmbrain.config import load_schema

    tool = load_tool()
    schema = load_schema()
    bare = [
        key
        for key, kind, _, text in tool.rows(schema, "", schema)
        if not text.strip() and not key.endswith(("[]", ">")) and kind != "object"
    ]
    assert bare == []


def test_rows_follow_refs_lists_and_named_entries():
    tool = load_tool()
    schema = {
        "$defs": {"n": {"type": "integer", "minimum": 1, "description": "a count"}},
        "type": "object",
        "properties": {
            "a": {"$ref": "#/$defs/n", "default": 2},
            "b": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"c": {"type": "string", "enum": ["x", "y"]}},
                },
            },
            "d": {"type": "array", "items": {"type": "object", "properties": {"e": {}}}},
        },
    }
    got = list(tool.rows(schema, "", schema))
    assert got[0] == ("a", "integer >= 1", "`2`", "a count")
    assert [row[0] for row in got] == ["a", "b", "b.<name>", "b.<name>.c", "d", "d[]", "d[].e"]
    assert got[3][1] == "one of: `x`, `y`"
    assert "| `a` | integer >= 1 | `2` | a count |" in tool.render(schema)
