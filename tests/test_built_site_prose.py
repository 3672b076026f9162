"""The prose of the built book carries no Python reprs (run by `make test` after the build).

A number glued into the text must be a plain Python float, int or str. A numpy or torch scalar
renders as its repr (``np.float64(86.8)``, ``tensor(0.5)``) in the middle of a sentence, which
the stored notebooks do not show (glue keeps the repr in ``text/plain``), only the built page.
This check reads every page of ``_build/html`` and fails on reprs in the rendered text *outside*
code cells, cell outputs, literal blocks and inline code, where reprs are legitimate. Pasted
glue values count as prose even when they render inside ``<code>``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_build" / "html"

#: Reprs that must never reach a sentence.
REPRS = re.compile(r"np\.(?:float|int|uint|bool_|complex|str_)\w*\(|numpy\.\w+\(|\btensor\(|\barray\(|dtype=")
#: Where code and its output are shown on purpose.
CODE = "div.cell_input, div.cell_output, div.highlight, pre, code, dt.sig, .sig, script, style, .headerlink"
#: Pasted glue values are prose even inside the elements above.
PASTED = ".pasted-text, .pasted-inline"


def prose(html: str) -> str:
    """The rendered text of a page's article, without code, outputs and literals (keeps glue)."""
    doc = BeautifulSoup(html, "html.parser")
    article = doc.select_one("article") or doc.select_one("div.bd-article") or doc.body or doc
    for pasted in article.select(PASTED):  # keep them: lift them out of any code wrapper
        pasted.replace_with(doc.new_string(" " + pasted.get_text(" ") + " "))
    for el in article.select(CODE):
        el.decompose()
    return re.sub(r"\s+", " ", article.get_text(" "))


def leaks(text: str, width: int = 60) -> list[str]:
    """Each repr in ``text`` with some context either side."""
    return [text[max(0, m.start() - width) : m.end() + width] for m in REPRS.finditer(text)]


def test_extractor_finds_a_leak_in_prose_but_not_in_code() -> None:
    page = """<html><body><article>
      <p>The coverage is <span class="pasted-text">np.float64(86.8)</span> %.</p>
      <p>Inline <code class="literal">torch.tensor([1.0])</code> is code.</p>
      <div class="cell_input"><pre>x = np.array([1]); print(x.dtype)</pre></div>
      <div class="cell_output"><pre>array([1])  dtype=int64</pre></div>
      <p>A glued value in code: <span class="pasted-inline"><code>tensor(0.5)</code></span>.</p>
    </article></body></html>"""
    found = leaks(prose(page))
    assert len(found) == 2
    assert "np.float64(86.8)" in found[0] and "tensor(0.5)" in found[1]
    assert leaks(prose("<article><p>I = 0.5, n = 20.</p><pre>tensor(0.5)</pre></article>")) == []


@pytest.mark.built_site
def test_no_python_repr_in_prose() -> None:
    if not (SITE / "index.html").exists():
        pytest.fail("no built book in _build/html: run `make book` first")
    pages = sorted(p for p in SITE.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)
    offenders = [f"{p.relative_to(SITE)}: ...{leak}..." for p in pages for leak in leaks(prose(p.read_text(encoding="utf-8")))]
    assert offenders == [], "Python reprs in the prose (glue a float(...), not a numpy/torch scalar):\n" + "\n".join(offenders)


@pytest.mark.built_site
def test_status_page_lists_every_chapter_with_its_run_time() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from notebooks import toc_notebooks

    page = SITE / "book" / "status.html"
    if not page.exists():
        pytest.fail("no built status page: run `make book` first")
    rows = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser").select("article table tbody tr")
    cells = [[td.get_text(" ", strip=True) for td in row.find_all("td")] for row in rows]
    by_notebook = {c[1]: c for c in cells if len(c) >= 3}
    for nb in toc_notebooks():
        assert nb.name in by_notebook, f"status table has no row for {nb.name}"
        assert re.fullmatch(r"\d+(\.\d+)?", by_notebook[nb.name][2]), f"no run time for {nb.name}: {by_notebook[nb.name]}"
