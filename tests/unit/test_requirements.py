"""A fresh clone's `pulumi up`: the pip toolchain installs requirements.txt, which must agree with
pyproject.toml, hold every import the program makes and nothing it does not use (each pulumi-* package in the
environment makes the engine download its provider plugin)."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness.fixtures import FAKE_SECRETS
from tests.harness.program import ROOT, stack_names
from tools import requirements

FIRST_PARTY = {path.name for path in ROOT.iterdir() if path.is_dir() and (path / "__init__.py").exists()}


def program_files() -> list[Path]:
    return [ROOT / "__main__.py", *sorted((ROOT / "components").rglob("*.py"))]


def third_party_imports(files: list[Path]) -> dict[str, list[str]]:
    """{top-level module: files importing it} for every import that is neither stdlib nor first party."""
    found: dict[str, list[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                    found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def distributions_of(modules: dict[str, list[str]]) -> tuple[set[str], list[str]]:
    """(normalized distribution names providing `modules`, modules no installed distribution provides)."""
    providers = importlib.metadata.packages_distributions()
    names: set[str] = set()
    unknown: list[str] = []
    for module, files in sorted(modules.items()):
        if module in providers:
            names.update(requirements.normalized(dist) for dist in providers[module])
        else:
            unknown.append(f"{module} (imported by {', '.join(sorted(set(files)))})")
    return names, unknown


def test_requirements_txt_is_generated_from_pyproject() -> None:
    assert requirements.unpinned(requirements.declared()) == []
    assert (ROOT / "requirements.txt").read_text(encoding="utf-8") == requirements.render(), \
        "requirements.txt is out of date: run `python -m tools.requirements --write`"
    assert requirements.main(["--check"]) == 0


def test_the_check_catches_a_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["pulumi==3.272.0", "PyYAML==6.0.4"]\n')
    monkeypatch.setattr(requirements, "PYPROJECT", pyproject)
    monkeypatch.setattr(requirements, "REQUIREMENTS", tmp_path / "requirements.txt")
    assert requirements.main(["--check"]) == 1
    assert requirements.main(["--write"]) == 0 and requirements.main(["--check"]) == 0
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["pulumi>=3"]\n')
    assert requirements.main(["--check"]) == 1
    assert "pin every dependency" in capsys.readouterr().err


def test_pulumi_yaml_uses_the_pip_toolchain_on_the_project_venv() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}


def test_every_program_import_is_declared() -> None:
    declared = set(requirements.pins(requirements.declared()))
    needed, unknown = distributions_of(third_party_imports(program_files()))
    assert unknown == [], "imports no installed distribution provides: declare them in pyproject.toml"
    assert sorted(needed - declared) == [], "the program imports packages pyproject.toml does not declare"


@pytest.mark.parametrize("dependency", sorted(requirements.pins(requirements.declared())))
def test_every_declared_dependency_is_imported_by_the_program(dependency: str) -> None:
    needed, _ = distributions_of(third_party_imports(program_files()))
    assert dependency in needed, f"{dependency} is declared but the program never imports it"


def test_the_policy_pack_runs_the_sdk_versions_the_tests_use() -> None:
    pack = [line for line in (ROOT / "policy/requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    test_extra = requirements.pins(requirements.project().get("optional-dependencies", {}).get("test", []))
    program = requirements.pins(requirements.declared())
    assert requirements.pins(pack) == {"pulumi": program["pulumi"], "pulumi-policy": test_extra["pulumi-policy"]}
    assert "pulumi-policy" not in program, "the policy SDK belongs to the pack, not the program's environment"


EVALUATE = """
import json, sys
from tools.offline import evaluate
secrets = json.loads(sys.argv[1])
print(json.dumps({stack: len(evaluate(stack, secrets)) for stack in sys.argv[2:]}))
"""


@pytest.mark.timeout(900)
def test_a_venv_built_only_from_requirements_txt_runs_every_shipped_stack(tmp_path: Path) -> None:
    """What `pulumi install` / the first `pulumi up` builds (python -m venv, pip install -r requirements.txt):
    the program evaluates every shipped stack in it, and it holds no pulumi-* package the program does not use.
    pip may reach PyPI; its cache makes this a ~20 s step."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", str(tmp_path)),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements.txt")],
                   check=True, env=env, cwd=ROOT)
    installed = json.loads(subprocess.run([python, "-m", "pip", "list", "--format", "json"], check=True,
                                          capture_output=True, text=True, env=env).stdout)
    providers = sorted(requirements.normalized(p["name"]) for p in installed
                       if requirements.normalized(p["name"]).startswith("pulumi-"))
    assert providers == sorted(name for name in requirements.pins(requirements.declared())
                               if name.startswith("pulumi-"))
    stacks = stack_names()
    result = subprocess.run([python, "-c", EVALUATE, json.dumps(FAKE_SECRETS), *stacks], capture_output=True,
                            text=True, env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(counts) == set(stacks) and all(counts.values()), counts
