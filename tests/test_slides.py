"""Lecture decks (scripts/slides.py, `make slides`): built from each chapter's own structure.

The deck of every chapter holds 15-30 slides (a 50-minute lecture at 2-3 minutes a slide), every
definition, theorem, proposition and lemma of the chapter, every glued figure, every exercise and
no solution, with speaker notes; the built decks render every slide's maths and images in Chromium,
within the slide's height.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import colab_cell  # noqa: E402
import slides  # noqa: E402
from notebooks import toc_notebooks  # noqa: E402

NOTEBOOKS = toc_notebooks()
IDS = [p.stem for p in NOTEBOOKS]
SLIDES = ROOT / "_build" / "slides"


def parsed(path: Path) -> tuple[BeautifulSoup, nbformat.NotebookNode]:
    page, _ = slides.deck(path)
    return BeautifulSoup(page, "html.parser"), nbformat.read(path, as_version=4)


def directives(nb, names: set[str], solutions: bool = False) -> list[tuple[str, str, str]]:
    """(name, argument, body) of the chapter's directives called ``names``, outside solution cells."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "markdown" or ("solution" in cell.metadata.get("tags", [])) != solutions:
            continue
        for m in slides.DIRECTIVE.finditer("".join(cell.source)):
            if m.group(2).strip() in names:
                found.append((m.group(2).strip(), m.group(3).strip(), m.group(4)))
    return found


def words(text: str) -> str:
    """The words of prose, maths removed (TeX source or MathJax delimiters)."""
    text = re.sub(r"\$\$.*?\$\$([ \t]*\([\w:.-]+\))?|\\\(.*?\\\)|\\\[.*?\\\]", " ", text, flags=re.S)
    text = re.sub(r"\$[^$]*\$", " ", text)
    return " ".join(re.findall(r"[A-Za-z]{3,}", text))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_deck_is_a_lecture(path: Path) -> None:
    doc, nb = parsed(path)
    sections = doc.select(".slides > section")
    assert slides.MIN_SLIDES <= len(sections) <= slides.MAX_SLIDES, f"{path.stem}: {len(sections)} slides"
    noted = [s for s in sections if s.find("aside", class_="notes") and s.find("aside", class_="notes").get_text(strip=True)]
    assert len(noted) >= len(sections) // 2, f"{path.stem}: speaker notes on {len(noted)} of {len(sections)} slides"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_deck_states_every_result_and_shows_every_figure(path: Path) -> None:
    doc, nb = parsed(path)
    shown = words(" ".join(s.get_text(" ") for s in doc.select(".slides > section .block")))
    statements = directives(nb, set(slides.STATEMENTS))
    assert statements, f"{path.stem} has no definition or theorem"
    for name, arg, body in statements:
        heading = slides.STATEMENTS[name] + (f" ({arg})" if arg else "")
        assert heading in doc.get_text(), f"{path.stem}: {heading} is not in the deck"
        prose = words(re.sub(r"\{[^}]*\}`[^`]*`|^:.*$", " ", body, flags=re.M))[:60]
        assert prose[:40] in shown, f"{path.stem}: the statement of {heading} is not on its slide"
    figures = {arg for _, arg, _ in directives(nb, {"glue:figure"})}
    alts = {img.get("alt") for img in doc.find_all("img")}
    assert figures <= alts, f"{path.stem}: figures missing from the deck: {sorted(figures - alts)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_deck_has_every_exercise_and_no_solution(path: Path) -> None:
    doc, nb = parsed(path)
    exercises = directives(nb, {"exercise"})
    assert len(doc.select(".block.exercise")) == len(exercises) >= 3
    text = words(doc.get_text(" "))
    for cell in nb.cells:
        if cell.cell_type == "markdown" and "solution" in cell.metadata.get("tags", []):
            body = re.sub(r"^:::.*$|^:[a-z-]+:.*$|\$[^$]*\$|\{[^}]*\}`[^`]*`", " ", "".join(cell.source), flags=re.M)
            sample = words(body)[:50]
            if len(sample) >= 30:
                assert sample not in text, f"{path.stem}: solution text on a slide: {sample!r}"


def test_install_cell_and_skipped_cells_stay_out(tmp_path: Path) -> None:
    copy = tmp_path / NOTEBOOKS[0].name
    shutil.copy(NOTEBOOKS[0], copy)
    nb = nbformat.read(copy, as_version=4)
    colab_cell.apply(nb, colab_cell.cell_source())
    nb.cells.append(nbformat.v4.new_markdown_cell("## Left out\n\nA sentence nobody should see.",
                                                  metadata={"slideshow": {"slide_type": "skip"}}))
    nbformat.write(nb, copy)
    page, _ = slides.deck(copy)
    text = re.sub(r"data:[^\"')\s]+", "", page)  # embedded figures are base64, where any word can occur
    assert "pip" not in text and "nobody should see" not in text


def test_marked_cell_without_structure_is_a_slide_as_written(tmp_path: Path) -> None:
    cells = [nbformat.v4.new_markdown_cell("# T\n\nIntro.")]
    cells += [nbformat.v4.new_markdown_cell(f"## S{i}\n\nText {i}.") for i in range(3)]
    cells.append(nbformat.v4.new_markdown_cell("A marked remark.", metadata={"slideshow": {"slide_type": "slide"}}))
    path = tmp_path / "t.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    doc = BeautifulSoup(slides.deck(path)[0], "html.parser")
    texts = [s.get_text(" ", strip=True) for s in doc.select(".slides > section")]
    assert any(t.startswith("A marked remark") for t in texts)
    assert texts[1].startswith("Outline") and [t.split()[0] for t in texts[2:5]] == ["S0", "S1", "S2"]


def test_citations_and_references_read_as_text() -> None:
    doc, _ = parsed(NOTEBOOKS[0])
    text = doc.get_text(" ")
    assert not re.search(r"\{(cite|ref|eq|numref|term|doc)[^}]*\}`", text)
    assert "Fisher (1925)" in text or "(Fisher 1925)" in text
    assert "fisher1925theory" not in text


# ---- the built decks in Chromium (make slides; run with the built-site checks) ------------------

@pytest.mark.built_site
@pytest.mark.parametrize("stem", IDS)
def test_every_slide_renders_its_maths_and_images_within_the_slide(stem: str) -> None:
    from test_built_site import CHROMIUM

    deck = SLIDES / f"{stem}.html"
    assert deck.exists(), f"no deck for {stem}: run `make slides`"
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: `bash scripts/ensure_chromium.sh`")
    from pdf import serve
    from playwright.sync_api import sync_playwright

    with serve(SLIDES) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith((base, "data:")) else r.abort())
        page.goto(f"{base}/{stem}.html", wait_until="load")
        page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=30_000)
        page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
        page.evaluate("MathJax.startup.promise")
        report = page.evaluate(
            """async () => {
                const out = [];
                for (let i = 0; i < Reveal.getTotalSlides(); i++) {
                    Reveal.slide(i);
                    await new Promise(r => setTimeout(r, 30));
                    const s = Reveal.getCurrentSlide();
                    const clone = s.cloneNode(true);
                    clone.querySelectorAll('aside.notes, mjx-container, pre, code').forEach(e => e.remove());
                    out.push({
                        i, height: s.scrollHeight,
                        math: s.querySelectorAll('mjx-container').length,
                        merror: s.querySelectorAll('mjx-merror').length,
                        raw: /\\\\\\(|\\\\\\[|\\$\\$/.test(clone.textContent),
                        images: [...s.querySelectorAll('img')].filter(im => !(im.complete && im.naturalWidth > 0)).length,
                    });
                }
                return out;
            }"""
        )
        browser.close()
    assert len(report) >= slides.MIN_SLIDES
    assert sum(r["math"] for r in report) > 0, f"{stem}: no typeset maths in the deck"
    assert [r["i"] for r in report if r["merror"]] == [], "slides with MathJax errors"
    assert [r["i"] for r in report if r["raw"]] == [], "slides with untypeset TeX"
    assert [r["i"] for r in report if r["images"]] == [], "slides with images that did not load"
    assert [r["i"] for r in report if r["height"] > 800] == [], "slides taller than the 1280x800 slide"
    assert errors == [], errors[:5]
