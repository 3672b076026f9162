"""List and execute the book's notebooks.

``python scripts/notebooks.py list`` prints the notebooks that ``_toc.yml`` names, one per line.
``python scripts/notebooks.py execute [NB ...]`` re-executes notebooks in place, top to bottom,
in a fresh ``python3`` kernel with the environment nbval uses (see :data:`ENV`), so that the
stored outputs are exactly what nbval re-creates. Without arguments it executes every toc
notebook. Execution stops with an error at the first failing cell.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent

#: Environment every notebook runs under, here and under nbval (the Makefile exports the same).
ENV = {
    "PYTHONHASHSEED": "0",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
    "OPENBLAS_NUM_THREADS": "2",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "TQDM_DISABLE": "1",
}


def toc_files(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """Every file that ``_toc.yml`` names (root and chapters), resolved to an existing path."""
    data = yaml.safe_load(toc.read_text())
    names: list[str] = [data["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                names.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key) or [])

    walk((data.get("parts") or []) + (data.get("chapters") or []))
    found = []
    for name in names:
        candidates = [ROOT / name] if Path(name).suffix else [ROOT / f"{name}.ipynb", ROOT / f"{name}.md"]
        path = next((c for c in candidates if c.exists()), None)
        if path is None:
            raise FileNotFoundError(f"_toc.yml names {name!r}, which does not exist")
        found.append(path)
    return found


def toc_notebooks() -> list[Path]:
    """The notebooks (``.ipynb``) among :func:`toc_files`, in toc order."""
    return [p for p in toc_files() if p.suffix == ".ipynb"]


def execute(path: Path, timeout: int = 600) -> float:
    """Execute ``path`` in place in a fresh kernel; return the wall time in seconds."""
    os.environ.update(ENV)
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    for cell in nb.cells:  # execution timing metadata would change on every run
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the toc notebooks")
    run = sub.add_parser("execute", help="execute notebooks in place")
    run.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    if args.command == "list":
        for nb in toc_notebooks():
            print(nb.relative_to(ROOT))
        return 0
    targets = [p.resolve() for p in args.notebooks] or toc_notebooks()
    for nb in targets:
        elapsed = execute(nb)
        print(f"{nb.relative_to(ROOT)}: executed in {elapsed:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
