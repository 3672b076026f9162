"""Build the student edition: every toc notebook without its solutions.

Cells tagged ``solution`` (the solution directives and any code between ``solution-start`` and
``solution-end``) are dropped, outputs are cleared, and the notebooks are written to
``_student/book/``, with the benchmark results the chapters read (``_student/benchmarks/``).
``make student`` then executes each copy from a fresh kernel to prove it still runs without the
solutions.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebooks import ROOT, toc_notebooks  # noqa: E402

SOLUTION_TAG = "solution"
SOLUTION_MARKERS = ("{solution}", "{solution-start}", "{solution-end}")


def is_solution(cell: dict) -> bool:
    """True for a cell tagged ``solution``."""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def untagged_solution_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Indices of cells that hold a solution directive but lack the ``solution`` tag."""
    return [
        i for i, cell in enumerate(nb.cells)
        if any(m in "".join(cell.source) for m in SOLUTION_MARKERS) and not is_solution(cell)
    ]


def student_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without solution cells, outputs cleared."""
    untagged = untagged_solution_cells(nb)
    if untagged:
        raise ValueError(f"cells {untagged} hold a solution directive but are not tagged 'solution'")
    out = nbformat.v4.new_notebook(metadata=nb.metadata)
    for cell in nb.cells:
        if is_solution(cell):
            continue
        cell = nbformat.from_dict(dict(cell))
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        out.cells.append(cell)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "_student")
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "book").mkdir(parents=True)
    for path in toc_notebooks():
        nb = nbformat.read(path, as_version=4)
        copy = student_copy(nb)
        dropped = len(nb.cells) - len(copy.cells)
        nbformat.write(copy, args.out / "book" / path.name)
        print(f"{path.name}: {dropped} solution cells removed")
    # the results files chapters read by relative path (../benchmarks/*.json, reports), so the copies
    # run as the chapters do
    (args.out / "benchmarks").mkdir()
    for item in sorted((ROOT / "benchmarks").iterdir()):
        if item.suffix in (".json", ".md"):
            shutil.copy(item, args.out / "benchmarks" / item.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
