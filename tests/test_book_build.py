"""The book build (`jupyter-book build -n -W --keep-going`, as `make book` runs it) fails on a broken
cross-reference or a missing citation. Each test builds a one-page book with the project's own
_config.yml and bibliography in a temporary folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"

GOOD = """# A page

(sec-here)=
## A section

Fisher's information {cite:p}`fisher1925theory`, see {ref}`sec-here`.

$$ I(\\theta) = \\operatorname{E}[s s^\\top] $$ (eq-def)

Equation {eq}`eq-def`.

```{bibliography}
```
"""


def build(tmp_path: Path, page: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "book").mkdir()
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    shutil.copy(ROOT / "book" / "references.bib", tmp_path / "book" / "references.bib")
    shutil.copytree(ROOT / "book" / "_ext", tmp_path / "book" / "_ext")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    (tmp_path / "page.md").write_text(page)
    return subprocess.run(
        [str(JUPYTER_BOOK), "build", str(tmp_path), "-n", "-W", "--keep-going"],
        capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_clean_page_builds(tmp_path: Path) -> None:
    result = build(tmp_path, GOOD)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_broken_reference_fails(tmp_path: Path) -> None:
    result = build(tmp_path, GOOD.replace("{ref}`sec-here`", "{ref}`sec-nowhere`"))
    assert result.returncode != 0
    assert "sec-nowhere" in result.stdout + result.stderr


@pytest.mark.slow
def test_missing_citation_fails(tmp_path: Path) -> None:
    result = build(tmp_path, GOOD.replace("fisher1925theory", "nobody2099"))
    assert result.returncode != 0
    assert "nobody2099" in result.stdout + result.stderr
