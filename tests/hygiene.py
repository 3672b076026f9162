"""Checks on stored notebooks that need no kernel: what a reader downloads must be clean.

Used by ``tests/test_notebook_hygiene.py`` on every notebook in ``_toc.yml`` and on the bad
fixtures under ``tests/fixtures/notebooks`` (to prove each check fails when it should).
"""

from __future__ import annotations

import getpass
import json
import re
from pathlib import Path

#: Stored size budget per notebook, outputs included. Figures are PNGs at the house dpi
#: (about 30–80 kB each); 2.5 MB leaves room for ~25 figures and keeps the repository, Binder
#: start-up and GitHub's notebook viewer fast.
SIZE_BUDGET_BYTES = 2_500_000

_MACHINE_PATH = re.compile(
    r"(/root/|/home/[A-Za-z0-9_.-]+|/Users/[A-Za-z0-9_.-]+|[A-Za-z]:\\\\Users|/tmp/|site-packages|/work/)"
)


def _user_pattern() -> re.Pattern[str] | None:
    user = getpass.getuser()
    if user in {"root", "jovyan", "runner"} or len(user) < 3:
        return None  # generic account names; the path patterns above catch their home folders
    return re.compile(rf"\b{re.escape(user)}\b")


def _output_texts(output: dict) -> list[str]:
    texts = []
    if "text" in output:
        texts.append("".join(output["text"]) if isinstance(output["text"], list) else output["text"])
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime.endswith("text/plain") or mime.endswith("text/html"):
            texts.append("".join(value) if isinstance(value, list) else str(value))
    return texts


def problems(path: Path) -> list[str]:
    """Every hygiene problem of the stored notebook at ``path``; empty when it is clean."""
    raw = path.read_bytes()
    found = []
    if len(raw) > SIZE_BUDGET_BYTES:
        found.append(f"{path.name}: {len(raw):,} bytes stored, over the {SIZE_BUDGET_BYTES:,}-byte budget")
    nb = json.loads(raw)
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel != "python3":
        found.append(f"{path.name}: kernelspec {kernel!r}, expected 'python3'")
    counts = []
    user = _user_pattern()
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        counts.append(cell.get("execution_count"))
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"{path.name}: cell {index} stores an error ({output.get('ename')})")
            if output.get("name") == "stderr":
                found.append(f"{path.name}: cell {index} writes to stderr (a warning left in the book?)")
            for text in _output_texts(output):
                match = _MACHINE_PATH.search(text) or (user.search(text) if user else None)
                if match:
                    found.append(f"{path.name}: cell {index} output shows a machine path or user name ({match.group(0)!r})")
    if any(c is None for c in counts):
        found.append(f"{path.name}: unexecuted code cells (store notebooks executed: make execute)")
    ran = [c for c in counts if c is not None]
    if ran != list(range(1, len(ran) + 1)):
        found.append(f"{path.name}: execution counts {ran[:10]} are not 1..n in order (re-run top to bottom)")
    return found
