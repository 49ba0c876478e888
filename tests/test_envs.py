"""Per-rule conda environments (`envs/*.yaml`) cover what the rules' scripts import.

Static checks (no conda needed): every `script:` of `rules/*.smk` is parsed with `ast`, and so
is every `lmbrain` module it reaches (transitively, through module-level and function-level
imports). The third-party packages they import, mapped to distribution names, must be listed
by the `conda:` environment of every rule that runs the script (conda dependencies or the pip
section). The rule for imports inside functions (lazy imports):

    a lazy import counts, unless the (script, distribution) pair is listed in NOT_ON_PATH with
    the reason the script never calls that function;

so a new lazy import fails the test until someone either adds the package to the env or says
why the script does not reach it. An exclusion is itself checked: it must name a package that
the script reaches only through lazy imports (a module-level import cannot be excluded).

Versions: each package listed both in an env and in pyproject.toml (dependencies or extras)
must carry the same specifier (conda's `pkg>=1.2` reads as pip's `pkg>=1.2`, `pkg=1.2` as
`pkg==1.2.*`), each env pins a Python that pyproject's `requires-python` allows, and every
third-party package `lmbrain` imports must be a pyproject dependency so the plain pip install
(the default path) gets it too.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]

#: import name -> distribution name (pip), where they differ
IMPORT_TO_DIST = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "skimage": "scikit-image",
}
#: conda package name -> pip distribution name, where they differ
CONDA_TO_PIP = {"pytorch": "torch"}

#: (script, distribution) -> why the script never runs the lazy import that brings it in
NOT_ON_PATH = {
    ("plot_brain_map.py", "transformers"): "lmbrain.config: only fraction_label is used",
    ("plot_brain_map.py", "gguf"): "lmbrain.config: only fraction_label is used",
    ("plot_brain_map.py", "torch"): "lmbrain.config: only fraction_label is used",
    ("plot_brain_map.py", "tqdm"): "lmbrain.config: only fraction_label is used",
    ("plot_brain_map.py", "accelerate"): "lmbrain.config: only fraction_label is used",
}


def dist_name(name: str) -> str:
    """Normalised distribution name (PEP 503), conda names mapped to pip's."""
    name = re.sub(r"[-_.]+", "-", name).lower()
    return CONDA_TO_PIP.get(name, name)


# -- imports -----------------------------------------------------------------------------------
@dataclass
class Imports:
    """Top-level module names imported at module level (``eager``) and inside functions."""

    eager: set[str] = field(default_factory=set)
    lazy: set[str] = field(default_factory=set)
    lmbrain: set[str] = field(default_factory=set)  # dotted lmbrain modules, eager or lazy


def file_imports(path: Path) -> Imports:
    """Imports of one Python file, split by where they occur."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = Imports()

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
                if child.module == "lmbrain":  # from lmbrain import plotting
                    names += [f"lmbrain.{alias.name}" for alias in child.names]
            for name in names:
                if name.split(".")[0] == "lmbrain":
                    out.lmbrain.add(name)
                else:
                    (out.lazy if inner else out.eager).add(name.split(".")[0])
            visit(child, inner)

    visit(tree, False)
    return out


def module_file(src: Path, dotted: str) -> Path | None:
    """File of a dotted module under ``src`` (a module or a package's ``__init__``)."""
    base = src.joinpath(*dotted.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None  # `from lmbrain.x import name` where name is not a module


def script_imports(script: Path, src: Path) -> Imports:
    """Third-party imports of a script and of every lmbrain module it reaches."""
    total = file_imports(script)
    seen: set[str] = set()
    todo = sorted(total.lmbrain)
    while todo:
        dotted = todo.pop()
        parts = dotted.split(".")
        # importing lmbrain.a.b runs lmbrain/__init__ and lmbrain/a/__init__ too
        for k in range(1, len(parts) + 1):
            name = ".".join(parts[:k])
            path = module_file(src, name)
            if name in seen or path is None:
                continue
            seen.add(name)
            found = file_imports(path)
            total.eager |= found.eager
            total.lazy |= found.lazy
            todo += sorted(found.lmbrain - seen)
    total.lazy -= total.eager
    return total


def third_party(names: set[str]) -> set[str]:
    """Distribution names of the non-stdlib, non-lmbrain modules among ``names``."""
    return {
        dist_name(IMPORT_TO_DIST.get(n, n))
        for n in names
        if n not in sys.stdlib_module_names and n not in ("lmbrain", "__future__")
    }


# -- rules and envs ----------------------------------------------------------------------------
#: ``rule NAME:``, ``use rule BASE as NAME``, and a rule generated in a loop (rules/fit.smk):
#: ``rule:`` with ``name: f"NAME{suffix}"``, recorded under the name's literal start.
RULE_RE = re.compile(
    r"^(?:rule|checkpoint)\s+(\w+)\s*:|^use rule (\w+) as (\w+)"
    r"|^[ \t]*rule:[ \t]*\n\s+name:\s*f?[\"'](\w+)",
    re.M,
)


def rule_scripts(rules_dir: Path) -> dict[str, tuple[str | None, str | None]]:
    """``{rule: (conda env path, script path)}`` (relative to ``rules/``) of every rule.

    A ``use rule A as B with:`` rule inherits A's env and script unless it sets its own. The
    rules a loop generates from one ``rule:`` block appear once, under their name's literal
    start (``fit_encoding_model`` for ``name: f"fit_encoding_model{_suffix}"``).
    """
    rules: dict[str, tuple[str | None, str | None]] = {}
    derived = []
    for smk in sorted(rules_dir.glob("*.smk")):
        text = smk.read_text()
        matches = list(RULE_RE.finditer(text))
        for i, match in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            block = text[match.start() : end]
            conda = directive(block, "conda")
            script = directive(block, "script")
            if match.group(1) or match.group(4):
                rules[match.group(1) or match.group(4)] = (conda, script)
            else:
                derived.append((match.group(3), match.group(2), conda, script))
    for name, base, conda, script in derived:
        base_conda, base_script = rules.get(base, (None, None))
        rules[name] = (conda or base_conda, script or base_script)
    return rules


def directive(block: str, key: str) -> str | None:
    """The string value of a ``key:`` directive of a rule block (on the same or next line)."""
    match = re.search(rf"^\s+{key}:\s*\n?\s*[\"']([^\"']+)[\"']", block, re.M)
    return match.group(1) if match else None


def env_specs(path: Path) -> dict[str, SpecifierSet]:
    """``{distribution: specifier}`` of a conda env file, conda and pip sections together."""
    env = yaml.safe_load(path.read_text())
    out: dict[str, SpecifierSet] = {}
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                if not line.startswith("-"):
                    req = Requirement(line)
                    out[dist_name(req.name)] = req.specifier
        else:
            name, spec = conda_requirement(dep)
            out[dist_name(name)] = spec
    return out


def conda_requirement(dep: str) -> tuple[str, SpecifierSet]:
    """A conda match spec ``name``, ``name>=1.2``, ``name=1.2`` as (name, pip specifier)."""
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", dep.strip())
    name, spec = match.group(1), match.group(2).replace(" ", "")
    if re.fullmatch(r"=[^=].*", spec):  # conda's `=1.2` means 1.2.*
        spec = f"=={spec[1:]}" + ("" if spec.endswith("*") else ".*")
    return name, SpecifierSet(spec)


def pyproject_specs(path: Path) -> dict[str, SpecifierSet]:
    """``{distribution: specifier}`` of pyproject.toml's dependencies and optional extras."""
    project = tomllib.loads(path.read_text())["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return {dist_name(Requirement(line).name): Requirement(line).specifier for line in lines}


# -- the checks, on any repository layout (the real one, or a synthetic one below) -------------
def coverage_gaps(root: Path) -> list[str]:
    """Every (rule, script, missing distribution) where a rule's env lacks an import."""
    gaps = []
    rules = rule_scripts(root / "rules")
    for rule, (conda, script) in sorted(rules.items()):
        if script is None:
            continue
        if conda is None:
            gaps.append(f"rule {rule}: runs {script} without a conda: env")
            continue
        script_path = (root / "rules" / script).resolve()
        imports = script_imports(script_path, root / "src")
        eager, lazy = third_party(imports.eager), third_party(imports.lazy)
        excluded = {d for (s, d) in NOT_ON_PATH if s == script_path.name}
        needed = eager | (lazy - excluded)
        have = set(env_specs((root / "rules" / conda).resolve()))
        for dist in sorted(needed - have):
            where = "module level" if dist in eager else "inside a function"
            gaps.append(f"rule {rule}: {conda} lacks {dist} (imported {where} by {script})")
    return gaps


def stale_exclusions(root: Path) -> list[str]:
    """NOT_ON_PATH entries whose package the script imports at module level, or not at all."""
    bad = []
    for script, dist in sorted(NOT_ON_PATH):
        imports = script_imports(root / "scripts" / script, root / "src")
        if dist in third_party(imports.eager) or dist not in third_party(imports.lazy):
            bad.append(f"{script}: {dist} is not a lazy-only import")
    return bad


def version_conflicts(root: Path) -> list[str]:
    """Packages whose env specifier differs from pyproject's, and lmbrain imports missing there."""
    pip = pyproject_specs(root / "pyproject.toml")
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    requires_python = SpecifierSet(project.get("requires-python", ""))
    problems = []
    for env in sorted((root / "envs").glob("*.yaml")):
        for dist, spec in env_specs(env).items():
            if dist == "python":
                pinned = [s.version.removesuffix(".*") for s in spec if s.operator == "=="]
                if not pinned or not all(requires_python.contains(v) for v in pinned):
                    problems.append(f"{env.name}: python{spec} outside {requires_python}")
            elif dist in pip and spec != pip[dist]:
                problems.append(f"{env.name}: {dist}{spec} but pyproject has {dist}{pip[dist]}")
    used = set()
    for path in (root / "src" / "lmbrain").rglob("*.py"):
        if path.name == "testing.py":  # test helper: tokenizers come with transformers
            continue
        found = file_imports(path)
        used |= third_party(found.eager | found.lazy)
    for dist in sorted(used - set(pip)):
        problems.append(f"lmbrain imports {dist}, which pyproject.toml does not list")
    return problems


# -- tests on this repository ------------------------------------------------------------------
def test_every_script_rule_has_an_env():
    rules = rule_scripts(ROOT / "rules")
    with_script = {r for r, (_, script) in rules.items() if script}
    assert {"extract_features", "fit_encoding_model", "plot_scaling"} <= with_script
    assert "validate_subject" in with_script  # `use rule ... with:` inherits the script
    for rule in with_script:
        conda, _ = rules[rule]
        assert conda and (ROOT / "rules" / conda).resolve().is_file(), rule


def test_envs_cover_script_imports():
    assert coverage_gaps(ROOT) == []


def test_exclusions_are_lazy_imports():
    assert stale_exclusions(ROOT) == []


def test_envs_and_pyproject_agree_on_versions():
    assert version_conflicts(ROOT) == []


def test_imports_follow_lmbrain_modules():
    """The fit script reaches himalaya only through lmbrain.encoding -> lmbrain.fitting."""
    script = ROOT / "scripts" / "fit_encoding_model.py"
    assert "himalaya" not in third_party(file_imports(script).eager | file_imports(script).lazy)
    found = script_imports(script, ROOT / "src")
    assert "himalaya" in third_party(found.eager | found.lazy)
    assert "numpy" in third_party(found.eager)


# -- the checks can fail: a synthetic repository -----------------------------------------------
@pytest.fixture
def synthetic(tmp_path):
    """rules/, scripts/, envs/, src/lmbrain/ and pyproject.toml with known gaps."""
    for folder in ["rules", "scripts", "envs", "src/lmbrain"]:
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "src/lmbrain/__init__.py").write_text("")
    (tmp_path / "src/lmbrain/helper.py").write_text(
        "import numpy as np\n\ndef f():\n    import scipy.linalg\n    return np, scipy\n"
    )
    (tmp_path / "scripts/run.py").write_text("import pandas\nfrom lmbrain.helper import f\n")
    (tmp_path / "rules/a.smk").write_text(
        'rule good:\n    conda:\n        "../envs/full.yaml"\n    script:\n        "../scripts/run.py"\n\n'
        'rule bad:\n    conda:\n        "../envs/thin.yaml"\n    script:\n        "../scripts/run.py"\n\n'
        "use rule bad as bad_too with:\n    output:\n        'x'\n"
    )
    env = {"channels": ["conda-forge"], "dependencies": ["python=3.11", "pandas>=2.0"]}
    (tmp_path / "envs/thin.yaml").write_text(yaml.safe_dump(env))
    env["dependencies"] += ["numpy>=1.20", {"pip": ["scipy>=1.10"]}]
    (tmp_path / "envs/full.yaml").write_text(yaml.safe_dump(env))
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nrequires-python = ">=3.12"\n'
        'dependencies = ["numpy>=1.24", "pandas>=2.0"]\n'
    )
    return tmp_path


def test_synthetic_gaps_are_found(synthetic):
    gaps = coverage_gaps(synthetic)
    assert gaps == [
        "rule bad: ../envs/thin.yaml lacks numpy (imported module level by ../scripts/run.py)",
        "rule bad: ../envs/thin.yaml lacks scipy (imported inside a function by ../scripts/run.py)",
        "rule bad_too: ../envs/thin.yaml lacks numpy (imported module level by ../scripts/run.py)",
        "rule bad_too: ../envs/thin.yaml lacks scipy (imported inside a function by ../scripts/run.py)",
    ]


def test_synthetic_version_conflicts_are_found(synthetic):
    assert version_conflicts(synthetic) == [
        "full.yaml: python==3.11.* outside >=3.12",
        "full.yaml: numpy>=1.20 but pyproject has numpy>=1.24",
        "thin.yaml: python==3.11.* outside >=3.12",
        "lmbrain imports scipy, which pyproject.toml does not list",
    ]


def test_conda_specs_read_as_pip_specifiers():
    assert conda_requirement("pytorch>=2.2") == ("pytorch", SpecifierSet(">=2.2"))
    assert conda_requirement("python=3.11") == ("python", SpecifierSet("==3.11.*"))
    assert conda_requirement("numpy") == ("numpy", SpecifierSet(""))
    assert dist_name("pytorch") == "torch" and dist_name("PyYAML") == "pyyaml"
