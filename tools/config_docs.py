"""Write config/README.md: every configuration key, from the schema (src/lmbrain/schemas/).

    python tools/config_docs.py > config/README.md

tests/test_config_docs.py checks that the file is up to date with the schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lmbrain.config import load_schema  # noqa: E402

HEADER = """# Configuration keys

Generated from `src/lmbrain/schemas/config.schema.yaml` by `python tools/config_docs.py >
config/README.md` (do not edit by hand: `tests/test_config_docs.py` checks it is up to date).
`config/config.yaml` is the demo configuration; the README's *Configuration* section explains
the main choices. Every key left out takes its default; the workflow records the filled-in
configuration in `results/<dataset>/summary/config.yaml`.

`<name>` stands for a key the user chooses (a dataset name); `[]` for the items of a list.

| key | type | default | description |
| --- | --- | --- | --- |
"""


def resolve(node: dict, schema: dict) -> dict:
    """``node`` with a local ``$ref`` replaced by its target (other keys kept)."""
    while "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def type_of(node: dict, schema: dict) -> str:
    """Short type text: ``string``, ``integer >= 1``, ``one of: a, b``, ``list of string``."""
    node = resolve(node, schema)
    if "enum" in node:
        return "one of: " + ", ".join(f"`{v}`" for v in node["enum"])
    for key in ("oneOf", "anyOf"):
        if key in node and "type" not in node:
            return " or ".join(dict.fromkeys(type_of(o, schema) for o in node[key]))
    kind = node.get("type", "any")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array" and "items" in node:
        return f"list of {type_of(node['items'], schema)}"
    bounds = [
        f"{sign} {node[key]}"
        for key, sign in [
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        ]
        if key in node
    ]
    return " ".join([kind, *bounds])


def cell(text) -> str:
    """One table cell: a single line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def rows(node: dict, path: str, schema: dict):
    """``(key, type, default, description)`` for ``node`` and everything under it."""
    node = resolve(node, schema)
    if path:
        default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
        yield path, type_of(node, schema), default, node.get("description", "")
    for name, child in node.get("properties", {}).items():
        yield from rows(child, f"{path}.{name}" if path else name, schema)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and (extra.get("properties") or "$ref" in extra):
        yield from rows(extra, f"{path}.<name>", schema)
    items = node.get("items")
    if isinstance(items, dict) and resolve(items, schema).get("properties"):
        yield from rows(items, f"{path}[]", schema)


def render(schema: dict | None = None) -> str:
    """The whole config/README.md."""
    schema = schema or load_schema()
    lines = [
        f"| `{key}` | {cell(kind)} | {cell(default)} | {cell(text)} |"
        for key, kind, default, text in rows(schema, "", schema)
    ]
    return HEADER + "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
