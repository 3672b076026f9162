"""The printed book, _build/pdf/fisherbook.pdf (`make pdf`; checked by `make pdf-test`).

Read back with poppler's pdftotext/pdfinfo: every chapter is in it under its title, no maths is
left as raw TeX, the page count is that of a book of this many chapters, every cross-reference
carries the page of its target, and the page it names really holds that target.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.built_site  # not in `make unit`; `make pdf-test` runs this file

ROOT = Path(__file__).resolve().parent.parent
PDF = ROOT / "_build" / "pdf" / "fisherbook.pdf"
sys.path.insert(0, str(ROOT / "scripts"))
from notebooks import toc_files, toc_notebooks  # noqa: E402


def _need_pdf() -> None:
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext is not installed: `bash scripts/ensure_pdf_tools.sh` (poppler-utils)")
    if not PDF.exists():
        pytest.fail("no _build/pdf/fisherbook.pdf: run `make pdf`")


@functools.cache
def pages() -> list[str]:
    _need_pdf()
    text = subprocess.run(["pdftotext", "-layout", str(PDF), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1] if text.endswith("\f") else text.split("\f")


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def chapter_titles() -> list[str]:
    titles = []
    for path in toc_notebooks():
        nb = nbformat.read(path, as_version=4)
        heading = next(line for c in nb.cells if c.cell_type == "markdown"
                       for line in "".join(c.source).splitlines() if line.startswith("# "))
        titles.append(heading[2:].strip())
    return titles


def test_every_chapter_title_is_printed_with_its_number() -> None:
    text = flat("\n".join(pages()))
    missing = [f"{i}. {t}" for i, t in enumerate(chapter_titles(), 1) if flat(f"{i}. {t}") not in text]
    assert missing == []


TEX = re.compile(r"\$\$|\$[^$]*\\[A-Za-z]+|\\(frac|tfrac|begin\{|mathrm|operatorname|theta|gamma|sigma|partial|sqrt|left|right)\b|\\\(|\\\[")


def test_no_maths_left_as_tex() -> None:
    """No TeX outside code: text in the prose fonts (not monospace, where code cells and their
    outputs legitimately show TeX strings) has no ``$$``, ``$...\\cmd`` or TeX command."""
    _need_pdf()
    xml = subprocess.run(["pdftohtml", "-xml", "-i", "-stdout", "-q", str(PDF)], capture_output=True, text=True, check=True).stdout
    mono = set(re.findall(r'<fontspec id="(\d+)"[^>]*family="[^"]*Mono[^"]*"', xml))
    raw = []
    for page in re.finditer(r'<page number="(\d+)".*?</page>', xml, re.S):
        for font, text in re.findall(r'<text [^>]*font="(\d+)"[^>]*>(.*?)</text>', page.group(0)):
            text = re.sub(r"<[^>]+>", "", text).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
            if font not in mono and TEX.search(text):
                raw.append(f"p. {page.group(1)}: {text.strip()[:100]}")
    assert mono, "no monospace font found: is code still printed?"
    assert raw == [], raw[:10]


def test_page_count_is_that_of_the_whole_book() -> None:
    n = len(pages())
    chapters = len(toc_notebooks())
    # every chapter prints 15-60 pages (figures, code and outputs included; the graduate-depth
    # chapters 1-7 print 40-55), the front and back matter (notation, glossary, API reference,
    # bibliography) another 20-100
    assert 15 * chapters + 20 <= n <= 60 * chapters + 100, f"{n} pages for {chapters} chapters"
    info = subprocess.run(["pdfinfo", str(PDF)], capture_output=True, text=True, check=True).stdout
    assert re.search(rf"^Pages:\s+{n}$", info, re.M)


def test_front_and_back_matter_and_bibliography_are_printed() -> None:
    text = flat("\n".join(pages()))
    for name in ("Notation", "Glossary", "References"):
        assert name in text
    # a bibliography entry (the first in the .bib, by author surname) and a figure caption number
    bib = (ROOT / "book" / "references.bib").read_text()
    first = re.search(r"author\s*=\s*[{\"]\s*([^,{}]+?)[, ]", bib).group(1).strip("{} ")
    assert first in text
    assert re.search(r"Fig\. 1\.1", text)
    assert len(toc_files()) > len(toc_notebooks())


def test_figures_are_embedded() -> None:
    _need_pdf()
    out = subprocess.run(["pdfimages", "-list", str(PDF)], capture_output=True, text=True, check=True).stdout
    images = [line for line in out.splitlines()[2:] if line.strip()]
    glued = sum(
        "".join(c.source).count("{glue:figure}") for p in toc_notebooks()
        for c in nbformat.read(p, as_version=4).cells if c.cell_type == "markdown"
    )
    assert len(images) >= glued, f"{len(images)} images in the PDF, {glued} glued figures in the chapters"


REF = re.compile(r"((?:Fig\.|Table|Theorem|Lemma|Proposition|Definition|Corollary)\s+\d+\.\d+|\(\d+\.\d+\))\s+\(p\.\s+(\d+)\)")


def test_cross_references_name_the_page_of_their_target() -> None:
    found = [(m.group(1), int(m.group(2)), n) for n, page in enumerate(pages(), 1) for m in REF.finditer(flat(page))]
    assert len(found) >= 5 * len(toc_notebooks()), f"only {len(found)} page-numbered cross-references"
    wrong = []
    for label, target, where in found:
        if not 1 <= target <= len(pages()):
            wrong.append(f"p. {where}: {label} -> p. {target} (no such page)")
            continue
        # the target page shows the label itself: the equation number, or "Theorem 2.1 (name)" / "Fig. 1.1 ..."
        if flat(label) not in flat(pages()[target - 1]).replace("Figure", "Fig."):
            wrong.append(f"p. {where}: {label} -> p. {target}, which does not show it")
    assert wrong == [], wrong[:10]


def test_contents_list_every_chapter_and_section_at_its_page() -> None:
    contents = next((i for i, p in enumerate(pages()) if re.search(r"^\s*Contents\s*$", p, re.M)), None)
    assert contents is not None and contents < 5, "no table of contents near the start"
    text = flat(" ".join(pages()[contents:contents + 4]))
    entries = re.findall(r"(\d+(?:\.\d+)?)\. ([^()]+?) \(p\. (\d+)\)", text)
    chapters = {num for num, _, _ in entries if "." not in num}
    assert chapters >= {str(i) for i in range(1, len(toc_notebooks()) + 1)}, sorted(chapters)
    def squeeze(t: str) -> str:  # headings wrap at hyphens and dashes on the page
        return re.sub(r"\s+", "", t)

    wrong = [f"{num}. {title} -> p. {page}" for num, title, page in entries
             if squeeze(f"{num}. {title}") not in squeeze(pages()[int(page) - 1])]
    assert wrong == [], wrong[:10]
