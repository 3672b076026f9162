"""environment.yml (Binder, conda) and pyproject.toml name the same runtime dependencies, at the
versions constraints.txt pins; .ci/run calls the README's test command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_RUNTIME = {"python", "pip"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_runtime() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {_name(r) for r in data["project"]["dependencies"]}


def conda_runtime() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name, _, rest = dep.partition("=")
            name = CONDA_TO_PYPI.get(name.strip().lower(), name.strip().lower())
            if name not in NOT_RUNTIME:
                found[name] = rest.split("=")[0]
    return found


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[_name(name)] = version.strip()
    return pins


def test_same_runtime_dependencies() -> None:
    assert set(conda_runtime()) == pyproject_runtime()


def test_conda_versions_match_constraints() -> None:
    pins = constraints()
    for name, version in conda_runtime().items():
        assert version, f"environment.yml leaves {name} unpinned"
        assert pins.get(name) == version, f"{name}: environment.yml has {version}, constraints.txt {pins.get(name)}"


def test_every_declared_dependency_is_pinned() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = set(pyproject_runtime())
    for extra in ("book", "test"):
        declared |= {_name(r) for r in data["project"]["optional-dependencies"][extra]}
    missing = declared - set(constraints())
    assert not missing, f"not pinned in constraints.txt: {sorted(missing)}"


def test_torch_is_the_local_cpu_build() -> None:
    assert constraints()["torch"] == "2.13.0"


def test_conda_pytorch_is_the_cpu_build() -> None:
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*-\s*pytorch=[\d.]+=cpu_\*", text, re.M)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme
    commands = [l.strip() for l in ci.splitlines() if l.strip() and not l.strip().startswith(("#", "set ", "cd "))]
    assert commands == ["make test"]
