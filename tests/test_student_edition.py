"""The student edition drops exactly the solution cells; every chapter has tagged exercises."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from notebooks import toc_notebooks  # noqa: E402
from student import is_solution, student_copy  # noqa: E402

NOTEBOOKS = toc_notebooks()


def _nb(*cells):
    return nbformat.v4.new_notebook(cells=list(cells))


def test_student_copy_drops_tagged_cells_and_clears_outputs() -> None:
    keep = nbformat.v4.new_code_cell("x = 1", outputs=[nbformat.v4.new_output("stream", text="1")], execution_count=1)
    sol = nbformat.v4.new_markdown_cell(":::{solution} ex-a\n:class: dropdown\nAnswer.\n:::", metadata={"tags": ["solution"]})
    code = nbformat.v4.new_code_cell("y = 2", metadata={"tags": ["solution"]})
    copy = student_copy(_nb(keep, sol, code))
    assert [c.source for c in copy.cells] == ["x = 1"]
    assert copy.cells[0].outputs == [] and copy.cells[0].execution_count is None


def test_untagged_solution_is_refused() -> None:
    sol = nbformat.v4.new_markdown_cell(":::{solution} ex-a\nAnswer.\n:::")
    with pytest.raises(ValueError, match="not tagged 'solution'"):
        student_copy(_nb(sol))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_chapter_has_three_exercises_each_with_a_hidden_tagged_solution(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    text = "\n".join("".join(c.source) for c in nb.cells if c.cell_type == "markdown")
    exercises = re.findall(r"\{exercise\}.*?\n:label:\s*(\S+)", text, re.S)
    assert len(exercises) >= 3, f"{path.name}: {len(exercises)} exercises with labels"
    solutions = {}
    for cell in nb.cells:
        for m in re.finditer(r"\{(solution|solution-start)\}\s*(\S+)((?:\n:[a-z-]+:.*)*)", "".join(cell.source)):
            solutions[m.group(2)] = (is_solution(cell), "dropdown" in m.group(3))
    for label in exercises:
        assert label in solutions, f"{path.name}: exercise {label} has no solution"
        tagged, hidden = solutions[label]
        assert tagged, f"{path.name}: the solution of {label} is not tagged 'solution'"
        assert hidden, f"{path.name}: the solution of {label} is not hidden (:class: dropdown)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_student_copy_has_no_solution_left(path: Path) -> None:
    copy = student_copy(nbformat.read(path, as_version=4))
    assert not any("{solution" in "".join(c.source) for c in copy.cells)
