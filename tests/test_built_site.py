"""Checks on the built HTML book in _build/html (run by `make test` after the build).

Static checks: no page loads a script, stylesheet, font or image from another server (the
book works offline; only the live-code button fetches Thebe, on click), MathJax is served from
the build, and every internal link points at an existing page and anchor. Browser check: every
page, served on localhost and opened in headless Chromium, typesets all its maths without MathJax
errors, loads every image, logs no console errors, makes no request off localhost, and chapter
pages carry the launch buttons.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
from bs4 import BeautifulSoup

pytestmark = pytest.mark.built_site

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# the only external address a page may name in a script: Thebe, fetched when live code is switched on
ALLOWED_INLINE_URLS = ("https://unpkg.com/thebe@",)


def pages() -> list[Path]:
    if not (SITE / "index.html").exists():
        pytest.fail("no built book in _build/html: run `make book` first")
    return sorted(p for p in SITE.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)


@functools.cache
def soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def is_external(url: str) -> bool:
    return urlparse(url).scheme in {"http", "https"} or url.startswith("//")


def test_no_external_resources() -> None:
    offenders = []
    for page in pages():
        doc = soup(page)
        for tag, attr in (("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src"),
                          ("source", "src"), ("video", "src"), ("audio", "src")):
            for el in doc.find_all(tag):
                url = el.get(attr)
                if tag == "link" and not set(el.get("rel", [])) & {"stylesheet", "preload", "icon", "modulepreload", "prefetch"}:
                    continue
                if url and is_external(url):
                    offenders.append(f"{page.relative_to(SITE)}: <{tag} {attr}={url}>")
        for script in doc.find_all("script", src=False):
            for url in re.findall(r"https?://[^\s\"'<>]+", script.get_text()):
                if not url.startswith(ALLOWED_INLINE_URLS):
                    offenders.append(f"{page.relative_to(SITE)}: inline script names {url}")
    for css in (SITE / "_static").rglob("*.css"):
        for url in re.findall(r"url\(\s*['\"]?(https?://[^)'\"]+)", css.read_text(errors="ignore")):
            offenders.append(f"{css.relative_to(SITE)}: url({url})")
        for url in re.findall(r"@import\s+(?:url\()?['\"]?(https?://[^)'\";]+)", css.read_text(errors="ignore")):
            offenders.append(f"{css.relative_to(SITE)}: @import {url}")
    assert offenders == []


def test_mathjax_is_served_from_the_build() -> None:
    srcs = {el["src"] for p in pages() for el in soup(p).find_all("script", src=True) if "mathjax" in el["src"].lower()}
    assert srcs, "no page loads MathJax"
    for page in pages():
        for el in soup(page).find_all("script", src=True):
            if "mathjax" in el["src"].lower():
                target = (page.parent / urlparse(el["src"]).path).resolve()
                assert target.exists(), f"{page.relative_to(SITE)} loads missing {el['src']}"


def test_internal_links_resolve() -> None:
    broken = []
    for page in pages():
        for a in soup(page).find_all("a", href=True):
            href = a["href"]
            if is_external(href) or href.startswith(("mailto:", "javascript:")):
                continue
            path, anchor = urldefrag(href)
            target = (page.parent / unquote(path)).resolve() if path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(SITE)} -> {href}")
                continue
            if anchor and target.suffix == ".html":
                ids = {el.get("id") for el in soup(target).find_all(id=True)}
                if anchor not in ids:
                    broken.append(f"{page.relative_to(SITE)} -> {href} (no #{anchor})")
    assert broken == []


def test_launch_links_name_this_repository_and_existing_notebooks() -> None:
    """Every Binder, Colab, repository and issues link is well formed, names the repository the
    build was configured with (scripts/repository.py) and, for launch links, a notebook that exists."""
    import sys

    if sys_path_scripts not in sys.path:
        sys.path.insert(0, sys_path_scripts)
    import repository

    owner, name = repository.owner_name(repository.url())
    branch = repository.yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["branch"]
    slug = rf"{re.escape(owner)}/{re.escape(name)}"
    binder = re.compile(rf"^https://mybinder\.org/v2/gh/{slug}/{re.escape(branch)}\?urlpath=lab/tree/(?P<path>[\w./-]+\.ipynb)$")
    colab = re.compile(rf"^https://colab\.research\.google\.com/github/{slug}/blob/{re.escape(branch)}/(?P<path>[\w./-]+\.ipynb)$")
    repo_links = re.compile(rf"^https://github\.com/{slug}(/issues/new\?title=[^\s]*)?$")
    bad, launched = [], set()
    for page in pages():
        for a in soup(page).find_all("a", href=True):
            href = a["href"]
            where = f"{page.relative_to(SITE)}: {href}"
            if "mybinder.org" in href or "colab.research.google.com" in href:
                match = binder.match(href) or colab.match(href)
                if match is None:
                    bad.append(f"{where} (malformed, or not {owner}/{name}@{branch})")
                elif not (ROOT / match["path"]).is_file():
                    bad.append(f"{where} (no notebook {match['path']})")
                elif match["path"] != str(page.relative_to(SITE).with_suffix(".ipynb")):
                    bad.append(f"{where} (launches another page's notebook)")
                else:
                    launched.add(match["path"])
            elif re.match(r"^https://github\.com/[^/]+/[^/]+(/issues.*)?$", href) and "sphinx-book-theme" not in href:
                if a.find_parent(class_="bd-article") is None and not repo_links.match(href):
                    bad.append(f"{where} (repository button not {owner}/{name})")
    assert bad == [], bad[:10]
    chapters = {str(p.relative_to(ROOT)) for p in (ROOT / "book").glob("*.ipynb")}
    assert launched == chapters, f"chapters without launch links: {sorted(chapters - launched)}"


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: `make test` installs it (scripts/ensure_chromium.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


PAGE_IDS = [str(p.relative_to(SITE)) for p in pages()] if (SITE / "index.html").exists() else []


@pytest.mark.parametrize("relpath", PAGE_IDS)
def test_page_renders_in_chromium(relpath: str, server: str, browser) -> None:
    page = browser.new_page()
    errors: list[str] = []
    off_site: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith(server) or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            off_site.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(f"{server}/{relpath}", wait_until="load")
    refresh = soup(SITE / relpath).find("meta", attrs={"http-equiv": re.compile("refresh", re.I)})
    if refresh is not None:  # the root index.html redirects to the first page
        target = refresh["content"].split("url=", 1)[-1].strip()
        page.wait_for_url(f"**/{target}")
        page.wait_for_load_state("load")
    has_math = page.evaluate("document.querySelectorAll('.math, .amsmath').length") > 0
    if has_math:
        page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
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
        assert state["untypeset"] == [], f"maths left as raw TeX: {state['untypeset'][:5]}"
        assert state["errors"] == [], f"MathJax errors: {state['errors'][:5]}"
    images = page.evaluate(
        "[...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
    )
    assert [src for src, ok in images if not ok] == [], "images that did not load"
    if relpath.startswith("book/") and (ROOT / relpath.replace(".html", ".ipynb")).exists():
        launch = page.evaluate(
            "[...document.querySelectorAll('a')].map(a => a.href).filter(h => /mybinder|colab/.test(h)).length"
        )
        assert launch >= 2, "a chapter page without its Binder and Colab launch buttons"
    assert errors == [], f"console errors: {errors[:5]}"
    assert off_site == [], f"requests off localhost: {off_site[:5]}"
    page.close()


def test_dropdown_proofs_fold_and_open(server: str, browser) -> None:
    """A proof given ``:class: dropdown`` is folded behind a button that opens it (book/_ext gives
    it the title sphinx-togglebutton needs)."""
    page = browser.new_page()
    page.goto(f"{server}/book/01-definition.html", wait_until="load")
    proofs = page.locator(".proof.dropdown")
    assert proofs.count() >= 3
    first = proofs.first
    assert first.locator(".admonition-title").inner_text().strip().startswith("Proof")
    body = first.locator(".admonition-title ~ *").first
    assert not body.is_visible()
    first.locator("button.toggle-button").click()
    page.wait_for_timeout(300)
    assert body.is_visible()
    page.close()


# ---- slide decks (make slides) -------------------------------------------------------------

SLIDES = ROOT / "_build" / "slides"
sys_path_scripts = str(ROOT / "scripts")


def _toc_stems() -> list[str]:
    import sys

    if sys_path_scripts not in sys.path:
        sys.path.insert(0, sys_path_scripts)
    from notebooks import toc_notebooks

    return [p.stem for p in toc_notebooks()]


@pytest.mark.parametrize("stem", _toc_stems())
def test_slide_deck_has_key_results(stem: str) -> None:
    deck = SLIDES / f"{stem}.html"
    assert deck.exists(), f"no deck for {stem}: run `make slides`"
    doc = BeautifulSoup(deck.read_text(encoding="utf-8"), "html.parser")
    sections = doc.select(".slides > section")
    assert len(sections) >= 4, f"{stem}: {len(sections)} slides, expected at least 4"
    assert doc.find("img"), f"{stem}: the deck shows no figure"
    for el in doc.find_all(["script", "link"]):
        url = el.get("src") or el.get("href") or ""
        assert not is_external(url), f"{stem}: loads {url}"


@pytest.fixture(scope="module")
def slide_server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SLIDES))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize("stem", _toc_stems())
def test_slide_deck_renders_offline(stem: str, slide_server: str, browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    off_site: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith((slide_server, "data:", "blob:")):
            r.continue_()
        else:
            off_site.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(f"{slide_server}/{stem}.html", wait_until="load")
    page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=30_000)
    if page.evaluate("document.body.innerHTML.includes('\\\\(') || document.body.innerHTML.includes('\\\\[')"):
        page.wait_for_function("document.querySelector('mjx-container') !== null", timeout=30_000)
        assert page.evaluate("document.querySelectorAll('mjx-merror').length") == 0
    assert page.evaluate("Reveal.getTotalSlides()") >= 4
    broken = page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0
    assert errors == [], errors[:5]
    assert off_site == [], off_site[:5]
    page.close()
