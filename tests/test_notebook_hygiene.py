"""Every toc notebook is stored clean; and each hygiene check fails on a notebook built to break it."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import hygiene  # noqa: E402
from notebooks import toc_notebooks  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "notebooks"
NOTEBOOKS = toc_notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_toc_notebook_is_clean(path: Path) -> None:
    assert hygiene.problems(path) == []


def test_toc_lists_every_chapter_notebook() -> None:
    chapters = sorted(p.name for p in (ROOT / "book").glob("*.ipynb"))
    assert sorted(p.name for p in NOTEBOOKS) == chapters, "a notebook in book/ is missing from _toc.yml"


def test_good_fixture_is_clean() -> None:
    assert hygiene.problems(FIXTURES / "good.ipynb") == []


def _write_variant(tmp_path: Path, edit) -> Path:
    nb = json.loads((FIXTURES / "good.ipynb").read_text())
    nb = copy.deepcopy(nb)
    edit(nb)
    path = tmp_path / "variant.ipynb"
    path.write_text(json.dumps(nb))
    return path


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_stale_execution_order_is_caught(tmp_path: Path) -> None:
    def swap(nb):
        cells = _code_cells(nb)
        cells[0]["execution_count"], cells[1]["execution_count"] = 2, 1

    assert any("not 1..n" in p for p in hygiene.problems(_write_variant(tmp_path, swap)))


def test_stale_fixture_is_caught() -> None:
    assert any("not 1..n" in p for p in hygiene.problems(FIXTURES / "stale_order.ipynb"))


def test_error_output_is_caught(tmp_path: Path) -> None:
    def add_error(nb):
        _code_cells(nb)[0]["outputs"].append(
            {"output_type": "error", "ename": "ValueError", "evalue": "boom", "traceback": []}
        )

    assert any("stores an error" in p for p in hygiene.problems(_write_variant(tmp_path, add_error)))


def test_machine_path_is_caught(tmp_path: Path) -> None:
    def add_path(nb):
        _code_cells(nb)[0]["outputs"].append(
            {"output_type": "stream", "name": "stdout", "text": ["saved to /home/alice/fisher.png\n"]}
        )

    assert any("machine path" in p for p in hygiene.problems(_write_variant(tmp_path, add_path)))


def test_wrong_kernelspec_is_caught(tmp_path: Path) -> None:
    def kernel(nb):
        nb["metadata"]["kernelspec"]["name"] = "myenv"

    assert any("kernelspec" in p for p in hygiene.problems(_write_variant(tmp_path, kernel)))


def test_size_budget_is_enforced(tmp_path: Path) -> None:
    def bloat(nb):
        _code_cells(nb)[0]["outputs"].append(
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": "A" * (hygiene.SIZE_BUDGET_BYTES + 1)}}
        )

    assert any("budget" in p for p in hygiene.problems(_write_variant(tmp_path, bloat)))
