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

Versions: every package of an env is pinned (`pkg==X`) to the version in constraints.txt (the
versions the suite passed with, which the README's install commands use), that pin satisfies
pyproject.toml's specifier, each env pins a Python that pyproject's `requires-python` allows, and
every third-party package `lmbrain` imports must be a pyproject dependency so the plain pip
install (the default path) gets it too. `test_envs_resolve_with_pip` asks pip (dry run) whether
each env's list installs as Snakemake will create it.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
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
    # nltk: the optional POS tagger of the nouns/verbs controls, reached only by
    # lmbrain.sentence_features.nltk_tagged_captions when a control has no `pos:` file; it
    # stops with an error naming nltk and its tagger data, which no env can ship (the data
    # is a separate download). The other scripts never call it.
    ("baseline_features.py", "nltk"): "optional tagger; user-installed with its data",
    **{
        (script, "nltk"): "lmbrain.sentence_features: no nouns/verbs control is built here"
        for script in (
            "extract_caption_features.py",
            "fit_trial_model.py",
            "trial_noise_ceiling.py",
            "trial_responses.py",
            "trial_rsa.py",
            "trial_searchlight.py",
        )
    },
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


def constraint_pins(path: Path) -> dict[str, str]:
    """``{distribution: version}`` of a constraints file's ``pkg==X`` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pinned = [s.version for s in req.specifier if s.operator == "=="]
            pins[dist_name(req.name)] = pinned[0] if len(pinned) == 1 else ""
    return pins


def version_conflicts(root: Path) -> list[str]:
    """Env packages not pinned as in constraints.txt or outside pyproject's specifier, and
    lmbrain imports missing from pyproject."""
    pip = pyproject_specs(root / "pyproject.toml")
    pins = constraint_pins(root / "constraints.txt")
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    requires_python = SpecifierSet(project.get("requires-python", ""))
    problems = []
    for env in sorted((root / "envs").glob("*.yaml")):
        for dist, spec in env_specs(env).items():
            pinned = [s.version.removesuffix(".*") for s in spec if s.operator == "=="]
            if dist == "python":
                if not pinned or not all(requires_python.contains(v) for v in pinned):
                    problems.append(f"{env.name}: python{spec} outside {requires_python}")
            elif dist == "pip":
                continue
            elif len(pinned) != 1 or pinned[0] != pins.get(dist):
                problems.append(
                    f"{env.name}: {dist}{spec} but constraints.txt has {dist}=={pins.get(dist)}"
                )
            elif dist in pip and not pip[dist].contains(pinned[0], prereleases=True):
                problems.append(f"{env.name}: {dist}{spec} but pyproject has {dist}{pip[dist]}")
    for dist, version in sorted(pins.items()):
        if dist in pip and not pip[dist].contains(version, prereleases=True):
            problems.append(f"constraints.txt: {dist}=={version} but pyproject has {pip[dist]}")
    used = set()
    for path in (root / "src" / "lmbrain").rglob("*.py"):
        if path.name == "testing.py":  # test helper: tokenizers come with transformers
            continue
        found = file_imports(path)
        used |= third_party(found.eager | found.lazy)
    for dist in sorted(used - set(pip)):
        problems.append(f"lmbrain imports {dist}, which pyproject.toml does not list")
    return problems


def pip_requirements(env: Path) -> list[str]:
    """An env's packages as pip requirement lines (conda names mapped), Python and pip left out."""
    return [
        f"{dist}{spec}"
        for dist, spec in sorted(env_specs(env).items())
        if dist not in ("python", "pip")
    ]


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
    full = {
        "channels": ["conda-forge"],
        "dependencies": ["python=3.11", "pip", "pandas=2.1.0", "numpy==1.23.0"],
    }
    full["dependencies"].append({"pip": ["scipy==1.10.0"]})
    (tmp_path / "envs/full.yaml").write_text(yaml.safe_dump(full))
    (tmp_path / "constraints.txt").write_text(
        "# pins\nnumpy==1.23.0\npandas==2.1.0\nscipy==1.11.0\n"
    )
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
        "full.yaml: numpy==1.23.0 but pyproject has numpy>=1.24",
        "full.yaml: scipy==1.10.0 but constraints.txt has scipy==1.11.0",
        "thin.yaml: python==3.11.* outside >=3.12",
        "thin.yaml: pandas>=2.0 but constraints.txt has pandas==2.1.0",
        "constraints.txt: numpy==1.23.0 but pyproject has >=1.24",
        "lmbrain imports scipy, which pyproject.toml does not list",
    ]


def test_conda_specs_read_as_pip_specifiers():
    assert conda_requirement("pytorch>=2.2") == ("pytorch", SpecifierSet(">=2.2"))
    assert conda_requirement("python=3.11") == ("python", SpecifierSet("==3.11.*"))
    assert conda_requirement("numpy") == ("numpy", SpecifierSet(""))
    assert dist_name("pytorch") == "torch" and dist_name("PyYAML") == "pyyaml"


# -- the envs install as Snakemake creates them ------------------------------------------------
def test_envs_install_nothing_by_path():
    """Snakemake copies each env file into .snakemake/conda/, so a relative `-e ..` or a local
    path would point somewhere else: the envs list registry packages only."""
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        for dep in yaml.safe_load(env.read_text())["dependencies"]:
            for line in dep.get("pip", []) if isinstance(dep, dict) else [dep]:
                assert not line.startswith(("-", ".", "/", "file:")), (env.name, line)
                Requirement(line if isinstance(dep, dict) else conda_requirement(line)[0])


def test_constraints_are_the_installed_versions():
    """constraints.txt records the versions this suite runs with (local labels like +cpu
    aside): a package upgraded here without updating the pins fails."""
    from importlib.metadata import PackageNotFoundError, version

    pins = constraint_pins(ROOT / "constraints.txt")
    assert {"numpy", "torch", "transformers", "himalaya", "snakemake", "nilearn"} <= set(pins)
    stale = []
    for dist, pinned in sorted(pins.items()):
        try:
            installed = version(dist).split("+")[0]
        except PackageNotFoundError:
            continue
        if installed != pinned:
            stale.append(f"{dist}: constraints.txt {pinned}, installed {installed}")
    assert stale == []


def _requires(item: dict, python: str) -> list[Requirement]:
    """The unconditional requirements of one package of a pip report, for ``python``."""
    out = []
    for line in item["metadata"].get("requires_dist", []):
        req = Requirement(line)
        env = {"python_version": python, "python_full_version": f"{python}.0", "extra": ""}
        if req.marker is None or req.marker.evaluate(env):
            out.append(req)
    return out


@pytest.mark.parametrize("name", ["extract", "fit", "plot"])
def test_envs_resolve_with_pip(name, tmp_path):
    """pip finds every pinned package of the env as a wheel for the env's Python (dry run,
    metadata only), and the pins agree with each other's requirements.

    pip resolves the list without dependencies (a few seconds; the packages each pin pulls
    in are left to pip when conda creates the env), then each package's own Requires-Dist
    (from pip's report) is checked against the env's other pins.
    """
    env = ROOT / "envs" / f"{name}.yaml"
    python = str(next(iter(env_specs(env)["python"])).version).removesuffix(".*")
    lines = pip_requirements(env)
    (tmp_path / "req.txt").write_text("\n".join(lines) + "\n")
    # --target only to let pip take --python-version; a dry run writes nothing there
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps"]
    cmd += ["--only-binary=:all:", "--python-version", python, "--target", str(tmp_path / "t")]
    cmd += ["--quiet", "--report", str(tmp_path / "report.json"), "-r", str(tmp_path / "req.txt")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    got = {dist_name(i["metadata"]["name"]): i for i in report["install"]}
    pins = {Requirement(line).name: Requirement(line).specifier for line in lines}
    assert set(got) == set(pins)
    clashes = []
    for dist, item in sorted(got.items()):
        assert pins[dist].contains(item["metadata"]["version"].split("+")[0])
        for req in _requires(item, python):
            other = dist_name(req.name)
            if other in got and not req.specifier.contains(
                got[other]["metadata"]["version"].split("+")[0], prereleases=True
            ):
                clashes.append(f"{dist} needs {req}, env pins {other}{pins[other]}")
    assert clashes == []
