"""The API page (book/api.md) documents every public module of the package: each one has its own
``automodule`` block, or sits in a subpackage whose block pulls in imported members. Modules that
only re-export others for older code, private modules and the experiment harness are exempt."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import fisherbook

API = Path(__file__).resolve().parent.parent / "book" / "api.md"
#: compatibility re-exports and internals documented through the modules they serve
EXEMPT = {"fisherbook.stats.inference", "fisherbook.continual.ewc", "fisherbook.linalg"}


def test_every_public_module_is_on_the_api_page() -> None:
    text = API.read_text()
    documented = set(re.findall(r"automodule:: (\S+)", text))
    with_imported = set(re.findall(r"automodule:: (\S+)\n   :members:\n   :imported-members:", text))
    missing = []
    for info in pkgutil.walk_packages(fisherbook.__path__, "fisherbook."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts[1:]) or parts[1] == "experiments" or info.name in EXEMPT:
            continue
        if info.name not in documented and ".".join(parts[:-1]) not in with_imported:
            missing.append(info.name)
    assert missing == [], f"modules without an automodule block on book/api.md: {missing}"


def test_the_check_sees_a_missing_module(tmp_path: Path) -> None:
    # the regular expressions must match the page's real blocks, or the test above would pass vacuously
    text = API.read_text()
    assert "fisherbook.stats.shrinkage" in set(re.findall(r"automodule:: (\S+)", text))
    assert "fisherbook.curvature" in set(re.findall(r"automodule:: (\S+)\n   :members:\n   :imported-members:", text))
