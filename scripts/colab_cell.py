"""Insert (or update) the install cell that lets a chapter run on Colab and other bare kernels.

Binder builds ``environment.yml``, which installs ``fisherbook``; Colab does not, so a chapter's
``import fisherbook`` would fail there. Each toc chapter gets, right after its title cell, a code
cell that installs the package from the repository (``pip install "fisherbook @ git+<url>@<branch>"``)
only when ``import fisherbook`` fails; where the package is importable (locally, on Binder, in CI)
it does nothing and prints nothing, so the stored (empty) output is what nbval re-creates.

The cell is tagged ``remove-cell`` (the book does not show it) and ``colab-install`` (how this
script, the slide builder and the tests find it), and marked ``slide_type: skip``. The student
edition keeps it: students open those copies on Colab too.

Idempotent: a notebook that has the cell gets its source and metadata refreshed in place; one that
lacks it gets it inserted with execution count 1, and every later code cell's count (and its
``execute_result`` outputs' counts) shifts by one, so the execution order stays 1..n without
re-executing the notebook.

    python scripts/colab_cell.py              # every toc chapter, in place
    python scripts/colab_cell.py --check      # exit 1 if a chapter lacks the cell or it is stale
    python scripts/colab_cell.py book/01-definition.ipynb
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import repository  # noqa: E402
from notebooks import ROOT, toc_notebooks  # noqa: E402

TAG = "colab-install"
TAGS = ["remove-cell", TAG]

TEMPLATE = '''\
# Colab and other bare kernels: install fisherbook from its repository when it is missing.
# Where it is installed (locally, on Binder) this cell does nothing.
try:
    import fisherbook
except ImportError:
    import importlib, subprocess, sys
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "fisherbook @ git+{url}@{branch}"], check=True)
    importlib.invalidate_caches()
    import fisherbook'''


def branch(config: Path = repository.CONFIG) -> str:
    """``repository.branch`` of ``_config.yml`` (the branch the launch buttons open)."""
    return str(yaml.safe_load(config.read_text(encoding="utf-8"))["repository"].get("branch", "main"))


def cell_source(repo_url: str | None = None, ref: str | None = None) -> str:
    """The install cell's code for ``repo_url`` (default: :func:`repository.url`) at ``ref``."""
    return TEMPLATE.format(url=repository.normalise(repo_url or repository.url()), branch=ref or branch())


def is_install_cell(cell: dict) -> bool:
    """True for the cell this script manages (tagged ``colab-install``)."""
    return cell.get("cell_type") == "code" and TAG in cell.get("metadata", {}).get("tags", [])


def _metadata(old: dict | None = None) -> dict:
    meta = dict(old or {})
    meta["tags"] = TAGS + [t for t in meta.get("tags", []) if t not in TAGS]
    meta["slideshow"] = {"slide_type": "skip"}
    return meta


def apply(nb: nbformat.NotebookNode, source: str) -> bool:
    """Insert or refresh the install cell in ``nb``; return whether anything changed."""
    existing = [i for i, c in enumerate(nb.cells) if is_install_cell(c)]
    if len(existing) > 1:
        raise ValueError(f"cells {existing} are all tagged {TAG!r}: keep one")
    if existing:
        cell = nb.cells[existing[0]]
        before = (cell.source, dict(cell.metadata))
        cell.source = source
        cell.metadata = nbformat.from_dict(_metadata(cell.metadata))
        return before != (cell.source, dict(cell.metadata))
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.execution_count is not None:
            cell.execution_count += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "execute_result" and out.get("execution_count") is not None:
                out["execution_count"] += 1
    new = nbformat.v4.new_code_cell(source, metadata=_metadata(), execution_count=1, outputs=[])
    new.pop("id", None)
    if nb.nbformat_minor >= 5:  # cell ids are required from nbformat 4.5
        new["id"] = "colab-install"
    first = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0  # after the title cell
    nb.cells.insert(first, new)
    return True


def stale(nb: nbformat.NotebookNode, source: str) -> str | None:
    """Why ``nb`` needs :func:`apply` (``None`` when its cell is present and current)."""
    cells = [c for c in nb.cells if is_install_cell(c)]
    if not cells:
        return "no install cell"
    if len(cells) > 1:
        return f"{len(cells)} install cells"
    if cells[0].source != source:
        return "install cell source is out of date"
    if cells[0].get("outputs"):
        return "install cell has stored outputs"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report, change nothing; exit 1 if any is stale")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every toc notebook")
    args = parser.parse_args(argv)
    source = cell_source()
    bad = 0
    for path in args.notebooks or toc_notebooks():
        nb = nbformat.read(path, as_version=4)
        name = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        if args.check:
            why = stale(nb, source)
            if why:
                bad += 1
                print(f"{name}: {why} (run: python scripts/colab_cell.py)")
            continue
        if apply(nb, source):
            nbformat.write(nb, path)
            print(f"{name}: install cell written")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
