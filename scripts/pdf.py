r"""Print the whole book to ``_build/pdf/fisherbook.pdf`` from its single-page HTML, in headless Chromium.

``make pdf`` first builds the single-page HTML (``jupyter-book build --builder singlehtml`` into
``_build/singlehtml``), then this script serves that folder on localhost, opens the page in
Debian's Chromium (driven by Playwright; the browser the built-site checks already use), waits
until MathJax has typeset every formula and every figure has loaded, and prints it: A4, a table
of contents, each part of the book from a new page, page numbers in the footer, code cells and
outputs as in the HTML, each solution printed open after its exercise (the student edition is
the handout without them). Cross-references keep their numbers (Theorem 2.1, equation (3.4),
Figure 5.2), stay links inside the PDF, and carry the page of their target,
"(p. 37)", as LaTeX's ``\pageref`` would: the page is printed, the named destinations Chromium
writes for link targets are read back with ``pdfinfo -dests`` (poppler-utils), the page numbers
are written after each cross-reference (the table of contents included), and the page is printed
again until no page number moves (two or three passes).

It fails, without writing a PDF, when a formula is left untypeset or raises a MathJax error, or
an image does not load.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebooks import ROOT  # noqa: E402

SITE = ROOT / "_build" / "singlehtml"
OUT = ROOT / "_build" / "pdf" / "fisherbook.pdf"
PAGE = "book/intro.html"
#: Sphinx writes the single page under the root document's folder (book/) but resolves its links
#: (_static/, _images/) from the build root; a copy at the root makes them resolve.
PRINTED = "fisherbook.html"

#: Print styles on top of the theme's: the navigation goes, the article takes the page width,
#: each document (front matter, chapter, back matter) starts a new page, figures stay whole.
PRINT_CSS = """
@page { size: A4; margin: 16mm 15mm 18mm 15mm; }
.bd-header, .bd-header-announcement, .bd-sidebar-primary, .bd-sidebar-secondary, .header-article,
.bd-footer, .bd-footer-article, .bd-footer-content, .prev-next-area, .headerlink, #pst-back-to-top,
.article-header-buttons, .skip-link, .search-button-field, .toggle-secondary-sidebar,
.primary-toggle, .secondary-toggle, .copybtn, button.toggle-button { display: none !important; }
.table-wrapper, .pst-scrollable-table-container { overflow: visible !important; }
table { font-size: 8pt; } .fb-pageref { font-size: 85%; color: #555; }
/* a numbered equation's anchor is its block: keep the block whole so the anchor lands on the page
   that shows the equation (a split block left its top, and the anchor, on the page before) */
div.math, mjx-container[display="true"] { break-inside: avoid; page-break-inside: avoid; }
.bd-container, .bd-container__inner, .bd-page-width, .bd-main, .bd-content, .bd-article-container,
.bd-article { max-width: 100% !important; width: 100% !important; margin: 0 !important;
  padding: 0 !important; display: block !important; }
html, body { font-size: 10.5pt; }
span[id^="document-"], #fb-contents { display: block; break-before: page; }
#fb-contents ul { list-style: none; padding-left: 0; } #fb-contents ul ul { padding-left: 1.5em; font-size: 92%; }
#fb-contents > ul > li { margin-top: 0.5em; font-weight: 600; } #fb-contents ul ul li { font-weight: normal; }
figure, img, .cell_output, .proof, .admonition, mjx-container[display="true"] { break-inside: avoid; }
h1, h2, h3, h4 { break-after: avoid; }
pre { white-space: pre-wrap !important; word-break: break-word; }
"""

FOOTER = (
    '<div style="font-size:8pt;width:100%;text-align:center;color:#555;">'
    '<span class="pageNumber"></span> / <span class="totalPages"></span></div>'
)


#: Writes (or updates) "(p. N)" after every cross-reference whose target page is known: numbered
#: references, equation and theorem references, chapter links and the table of contents; not
#: API links, glossary terms or citations.
PAGEREFS_JS = """(dests) => {
  const ids = [];
  for (const a of document.querySelectorAll('.bd-article a.reference.internal[href^="#"]')) {
    if (a.querySelector('.xref.py, .std-term, code')) continue;
    const id = decodeURIComponent(a.getAttribute('href').slice(1));
    const target = document.getElementById(id);
    if (!target || !(id in dests) || target.closest('.citation, .bibliography, dl.glossary, dl.py')) continue;
    let tag = a.nextElementSibling;
    if (!(tag && tag.classList.contains('fb-pageref'))) {
      tag = document.createElement('span'); tag.className = 'fb-pageref'; a.after(tag);
    }
    tag.textContent = '\u00a0(p.\u00a0' + dests[id] + ')';
    ids.push(id);
  }
  return ids;
}"""

#: A printed table of contents before the first document after the title page: each document's
#: heading and, below it, its sections; PAGEREFS_JS then adds their pages.
CONTENTS_JS = r"""() => {
  const docs = [...document.querySelectorAll('span[id^="document-"]')];
  if (!docs.length || document.getElementById('fb-contents')) return 0;
  const nav = document.createElement('nav');
  nav.id = 'fb-contents';
  nav.innerHTML = '<h2>Contents</h2>';
  const list = document.createElement('ul');
  // the entry is a copy of the heading's rendered content (typeset maths included; textContent
  // would drop or garble it), without its permalink
  const link = (target, heading) => {
    const a = document.createElement('a');
    a.className = 'reference internal'; a.href = '#' + target;
    const copy = heading.cloneNode(true);
    copy.querySelectorAll('a.headerlink').forEach(e => e.remove());
    copy.querySelectorAll('[id]').forEach(e => e.removeAttribute('id'));
    a.append(...copy.childNodes);
    return a;
  };
  for (const span of docs) {
    const sec = span.nextElementSibling;
    const h = sec && sec.querySelector('h1, h2');
    if (!h) continue;
    const li = document.createElement('li');
    li.appendChild(link(span.id, h));
    const subs = [...sec.querySelectorAll(':scope > section[id]')]
      .filter(s => s.querySelector('h2, h3') && !/^exercise|^solution/.test(s.id))
      .map(s => {
        // section ids repeat across documents on the single page ("summary"): make this one unique
        if (document.querySelectorAll(`[id="${CSS.escape(s.id)}"]`).length > 1) {
          s.id = span.id.replace(/[^\w-]/g, '-') + '-' + s.id;
        }
        // link to the heading itself: a section's top can stay on the page before its heading
        const hh = s.querySelector('h2, h3');
        if (!hh.id) hh.id = s.id + '-heading';
        return [hh.id, hh];
      });
    if (subs.length) {
      const ul = document.createElement('ul');
      for (const [id, sh] of subs) {
        const sli = document.createElement('li');
        sli.appendChild(link(id, sh));
        ul.appendChild(sli);
      }
      li.appendChild(ul);
    }
    list.appendChild(li);
  }
  nav.appendChild(list);
  docs[0].before(nav);
  return list.children.length;
}"""

DEST = re.compile(r'^\s*(\d+)\s+\[.*\]\s+"(.+)"\s*$')


def destinations(pdf: Path) -> dict[str, int]:
    """Named destination -> page number (1-based) of ``pdf``, from poppler's ``pdfinfo -dests``."""
    if shutil.which("pdfinfo") is None:
        raise SystemExit("pdfinfo is not installed: run `bash scripts/ensure_pdf_tools.sh` (poppler-utils)")
    text = subprocess.run(["pdfinfo", "-dests", str(pdf)], capture_output=True, text=True, check=True).stdout
    return {m.group(2): int(m.group(1)) for m in map(DEST.match, text.splitlines()) if m}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on a free localhost port for the duration of the block."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise SystemExit("chromium is not installed: run `bash scripts/ensure_chromium.sh`")
    return path


def print_pdf(site: Path = SITE, out: Path = OUT, page_path: str = PAGE) -> int:
    """Print ``site/page_path`` to ``out``."""
    from playwright.sync_api import sync_playwright

    if not (site / page_path).exists():
        raise SystemExit(f"no single-page HTML at {site / page_path}: run `make pdf`")
    start = time.perf_counter()
    shutil.copy(site / page_path, site / PRINTED)
    with serve(site) as base, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium(),
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1000, "height": 1400})
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith((base, "data:", "blob:")) else r.abort())
        page.goto(f"{base}/{PRINTED}", wait_until="load", timeout=120_000)
        page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=120_000)
        page.evaluate("MathJax.startup.promise")
        state = page.evaluate(
            """() => ({
                untypeset: [...document.querySelectorAll('.math, .amsmath')]
                    .filter(el => !el.querySelector('mjx-container') && !el.closest('mjx-container'))
                    .map(el => el.textContent.slice(0, 80)),
                errors: [...document.querySelectorAll('mjx-merror, [data-mjx-error]')]
                    .map(el => el.getAttribute('data-mjx-error') || el.textContent.slice(0, 80)),
            })"""
        )
        if state["untypeset"] or state["errors"]:
            raise SystemExit(f"maths not typeset: {state['untypeset'][:5]} errors: {state['errors'][:5]}")
        page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
        page.wait_for_function("[...document.images].every(i => i.complete)", timeout=120_000)
        broken = page.evaluate("[...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.src.slice(0, 80))")
        if broken:
            raise SystemExit(f"images that did not load: {broken[:5]}")
        page.evaluate(CONTENTS_JS)
        page.add_style_tag(content=PRINT_CSS)
        page.emulate_media(media="print")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".part")
        known: dict[str, int] = {}
        refs: list[str] = []
        for passes in range(1, 6):
            page.pdf(
                path=str(tmp), format="A4", print_background=True, prefer_css_page_size=True,
                display_header_footer=True, header_template="<span></span>", footer_template=FOOTER,
                outline=True, tagged=True,
            )
            dests = destinations(tmp)
            if passes > 1 and all(dests.get(k) == known.get(k) for k in refs):
                break  # every page number written is the page its target landed on
            known = dests
            refs = page.evaluate(PAGEREFS_JS, known)
        else:
            raise SystemExit("page references did not settle after 5 passes")
        browser.close()
    tmp.replace(out)
    print(f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}: "
          f"{out.stat().st_size / 1e6:.1f} MB, {len(refs)} page references, {passes} passes, "
          f"{time.perf_counter() - start:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, default=SITE, help="the single-page HTML build")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    return print_pdf(args.site, args.out)


if __name__ == "__main__":
    sys.exit(main())
