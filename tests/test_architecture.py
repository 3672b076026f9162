"""The package layout matches docs/architecture.md: every subpackage is on the map, and imports
point the way the map says (checked on the import statements, so a violation fails here before
it becomes a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fisherbook"
MAP = (ROOT / "docs" / "architecture.md").read_text()

# what each top-level unit may import from fisherbook (besides itself)
ALLOWED = {
    "errors": set(),
    "_validate": {"errors"},
    "_numerics": {"errors", "_validate"},
    "plotting": set(),
    "stats": {"errors", "_validate", "_numerics"},
    "geometry": {"errors", "_validate", "_numerics", "stats"},
    "data": {"errors", "_validate"},
    "linalg": {"errors", "_validate"},
    "curvature": {"errors", "_validate", "linalg"},
    "optim": {"errors", "_validate", "linalg", "curvature"},
    "continual": {"errors", "_validate", "linalg", "curvature", "data"},
    "bayes": {"errors", "_validate", "_numerics", "linalg", "curvature", "data", "stats"},
    "overparam": {"errors", "_validate", "linalg", "curvature", "data"},
    "experiments": None,  # anything
}


def units() -> list[str]:
    names = [p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    names += [p.stem for p in PKG.glob("*.py") if p.name != "__init__.py"]
    return sorted(names)


def imported_units(path: Path, unit: str) -> set[str]:
    """Top-level fisherbook units that the module at ``path`` imports."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    package = parts[:-1]  # the package the module lives in (for __init__.py: the package itself)
    return imported_units_of(path.read_text(), package, unit)


def imported_units_of(source: str, package: list[str], unit: str) -> set[str]:
    """Top-level fisherbook units imported by ``source``, a module inside fisherbook/<package>."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        targets: list[list[str]] = []
        if isinstance(node, ast.ImportFrom):
            base = (node.module or "").split(".") if node.module else []
            if node.level == 0:
                if base[:1] != ["fisherbook"]:
                    continue
                full = base[1:]
            else:
                up = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                full = up + base
            if full:
                targets.append(full)
            else:  # from . import x, y
                targets += [[a.name] for a in node.names]
        elif isinstance(node, ast.Import):
            targets += [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "fisherbook"]
        for t in targets:
            if t and t[0] != unit:
                found.add(t[0])
    return found


@pytest.mark.parametrize("unit", units())
def test_every_unit_is_on_the_map(unit: str) -> None:
    assert f"`fisherbook.{unit}`" in MAP, f"docs/architecture.md does not list fisherbook.{unit}"
    assert unit in ALLOWED, f"tests/test_architecture.py has no dependency rule for fisherbook.{unit}"


@pytest.mark.parametrize("unit", units())
def test_imports_follow_the_dependency_direction(unit: str) -> None:
    allowed = ALLOWED.get(unit)
    if allowed is None:
        return
    files = [PKG / f"{unit}.py"] if (PKG / f"{unit}.py").exists() else sorted((PKG / unit).rglob("*.py"))
    bad = {str(f.relative_to(ROOT)): sorted(imported_units(f, unit) - allowed) for f in files}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"imports against docs/architecture.md: {bad}"


def test_top_level_does_not_reexport_experiments() -> None:
    tree = ast.parse((PKG / "__init__.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments"):
            pytest.fail("fisherbook/__init__.py re-exports names from experiments (not public API)")


def test_the_checker_sees_a_violation() -> None:
    # the rule must be able to fail: a curvature module importing stats, geometry or itself
    src = "from ..stats import families\nfrom fisherbook.geometry import riemannian\nfrom . import api\nfrom .. import errors\n"
    assert imported_units_of(src, ["curvature"], "curvature") == {"stats", "geometry", "errors"}
    assert imported_units_of("from .families import x\n", ["stats"], "stats") == set()
    assert imported_units_of("from . import optim, data\n", [], "") == {"optim", "data"}
