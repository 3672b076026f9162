"""The built site shows no TeX as text: maths that MyST did not parse as maths (a line inside
``$...$`` that starts with ``+``/``-`` becomes a list item, an unbalanced ``$``) reaches the reader
as raw ``\\gamma`` and ``$``, which MathJax never sees, so the browser check cannot catch it.
The PDF check (tests/test_pdf.py) reads the same defect back from the printed page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

pytestmark = pytest.mark.built_site

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_build" / "html"
TEX = re.compile(r"\$\$|\$[^$\n]*\\[A-Za-z]+|\\(frac|tfrac|operatorname|mathrm|mathbb|begin|gamma|theta|sigma|partial|sqrt)\b")
#: where TeX may legitimately appear as text: typeset maths, code and its outputs, scripts
SKIP = ".math, .amsmath, pre, code, script, style, .highlight, .cell_output, .output, .sig, dl.py, .bibliography"


def test_no_tex_left_as_text_in_chapters() -> None:
    chapters = sorted((SITE / "book").glob("[0-9][0-9]-*.html"))
    if not chapters:
        pytest.fail("no built chapters in _build/html/book: run `make book`")
    found = []
    for page in chapters:
        doc = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        article = doc.select_one(".bd-article") or doc
        for el in article.select(SKIP):
            el.decompose()
        for text in article.find_all(string=True):
            if TEX.search(text):
                found.append(f"{page.name}: {text.strip()[:100]}")
    assert found == [], found[:10]
