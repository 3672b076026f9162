"""Scholarly apparatus of the book: every bibliography entry is cited, every chapter has index
entries and links its terms to the glossary, and every glossary term used is defined."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from notebooks import toc_files, toc_notebooks  # noqa: E402

NOTEBOOKS = toc_notebooks()


def markdown_of(path: Path) -> str:
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text())
        return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return path.read_text()


def all_text() -> str:
    return "\n".join(markdown_of(p) for p in toc_files())


def test_every_bibliography_entry_is_cited() -> None:
    keys = re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(), re.M)
    assert len(keys) == len(set(keys)), "duplicate keys in references.bib"
    cited = set()
    for role_keys in re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", all_text()):
        cited |= {k.strip() for k in role_keys.split(",")}
    assert sorted(set(keys) - cited) == []


def glossary_terms() -> set[str]:
    text = (ROOT / "book" / "glossary.md").read_text()
    block = text.split(":::{glossary}", 1)[1].split("\n:::", 1)[0]
    return {line.strip() for line in block.splitlines() if line and not line.startswith((" ", "\t"))}


def test_every_term_used_is_in_the_glossary() -> None:
    used = {re.sub(r"^.*<(.*)>$", r"\1", t).strip() for t in re.findall(r"\{term\}`([^`]+)`", all_text())}
    terms = {t.lower() for t in glossary_terms()}
    assert sorted(u for u in used if u.lower() not in terms) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_chapter_links_glossary_and_index(path: Path) -> None:
    text = markdown_of(path)
    assert len(re.findall(r"\{term\}`", text)) >= 3, f"{path.name} links fewer than 3 glossary terms"
    assert len(re.findall(r"\{index\}", text)) >= 3, f"{path.name} has fewer than 3 index entries"
    assert re.search(r"\{cite:[pt]\}`", text), f"{path.name} cites nothing"
