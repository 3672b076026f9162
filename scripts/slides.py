"""Build reveal.js slide decks from the chapters' slide metadata, served entirely from the build.

Each toc notebook marks its deck cells with ``"slideshow": {"slide_type": "slide"}`` (or
``subslide``/``fragment``). For every chapter this writes ``_build/slides/<chapter>.html`` holding
those cells: markdown rendered to HTML (MyST roles and glue references resolved, maths left for
MathJax), code cells shown by their outputs (figures and printed results). reveal.js (from the npm
registry, ``REVEAL_VERSION``) and MathJax (the copy the book serves) are copied next to the decks,
so the slides need no network in the lecture hall.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebooks import ROOT, toc_notebooks  # noqa: E402

REVEAL_VERSION = "5.2.1"
SLIDE_TYPES = {"slide", "subslide", "fragment"}
CACHE = ROOT / ".cache" / "reveal"


def reveal_dir() -> Path:
    """The reveal.js package folder, installed from npm into ``.cache/reveal`` on first use."""
    pkg = CACHE / "node_modules" / "reveal.js"
    meta = pkg / "package.json"
    if not meta.exists() or json.loads(meta.read_text())["version"] != REVEAL_VERSION:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(CACHE), f"reveal.js@{REVEAL_VERSION}"],
            check=True, stdout=subprocess.DEVNULL,
        )
    return pkg


def mathjax_dir() -> Path:
    """MathJax 3 as shipped by sphinx-mathjax-offline (the copy the book serves)."""
    import importlib.util

    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("sphinx-mathjax-offline is not installed (it is in the 'book' extra)")
    return Path(spec.origin).parent / "static" / "mathjax"


def glue_store(nb: nbformat.NotebookNode) -> dict[str, dict]:
    """Every glued value of the notebook: name -> mime bundle (prefix removed)."""
    store = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                store[name] = {k.replace("application/papermill.record/", ""): v for k, v in out.get("data", {}).items()}
    return store


def _glue_text(store: dict[str, dict], name: str, fmt: str | None) -> str:
    bundle = store.get(name, {})
    raw = "".join(bundle.get("text/plain", "")).strip("'\"")
    if fmt:
        try:
            return format(float(raw), fmt)
        except ValueError:
            return raw
    return raw


def _img(data: str, alt: str = "") -> str:
    return f'<img src="data:image/png;base64,{"".join(data).strip()}" alt="{html.escape(alt)}">'


ROLE = re.compile(r"\{([a-z:]+)\}`([^`]*)`")
DIRECTIVE = re.compile(r"^(`{3,}|:{3,})\{([^}]+)\}[ \t]*(.*?)\n(.*?)^\1[ \t]*$", re.M | re.S)


def myst_to_markdown(text: str, store: dict[str, dict]) -> str:
    """Reduce MyST to CommonMark + HTML: glue resolved, roles to text, directives to their body."""
    text = re.sub(r"^\([A-Za-z0-9_:-]+\)=\s*$", "", text, flags=re.M)

    def directive(m: re.Match) -> str:
        name, arg, body = m.group(2).strip(), m.group(3).strip(), m.group(4)
        lines = body.splitlines()
        while lines and re.match(r"^:[a-z-]+:", lines[0]):
            lines.pop(0)
        body = myst_to_markdown("\n".join(lines), store)
        if name == "glue:figure":
            png = store.get(arg, {}).get("image/png")
            figure = _img(png, arg) if png else ""
            return f"<figure>{figure}<figcaption>{html.escape(body.strip())}</figcaption></figure>\n"
        if name in {"math", "prf:proof", "solution", "solution-start", "solution-end", "index"}:
            return "" if name.startswith("solution") or name == "index" else body
        title = name.split(":")[-1].replace("-", " ").capitalize() + (f": {arg}" if arg else "")
        return f"**{title}.** {body}\n"

    text = DIRECTIVE.sub(directive, text)

    def role(m: re.Match) -> str:
        kind, content = m.group(1), m.group(2)
        if kind in {"glue:text", "glue:", "glue"}:
            name, _, fmt = content.partition(":")
            return _glue_text(store, name, fmt or None)
        if kind.startswith("cite"):
            return f"[{content}]"
        shown = re.match(r"^(.*?)\s*<.*>$", content)
        return shown.group(1) if shown else content

    return ROLE.sub(role, text)


MD = MarkdownIt("commonmark", {"html": True}).enable("table").use(dollarmath_plugin, double_inline=True)
MD.add_render_rule("math_inline", lambda self, tokens, idx, options, env: f"\\({html.escape(tokens[idx].content)}\\)")
MD.add_render_rule("math_block", lambda self, tokens, idx, options, env: f"<p>\\[{html.escape(tokens[idx].content)}\\]</p>")
MD.add_render_rule("math_block_label", lambda self, tokens, idx, options, env: f"<p>\\[{html.escape(tokens[idx].content)}\\]</p>")


def render_cell(cell: dict, store: dict[str, dict]) -> str:
    """HTML for one deck cell."""
    source = "".join(cell.source)
    if cell.cell_type == "markdown":
        return MD.render(myst_to_markdown(source, store))
    parts = []
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        glued_png = data.get("application/papermill.record/image/png")
        if glued_png:  # a figure glued with display=False: the deck shows it where it was made
            parts.append(_img(glued_png, out.get("metadata", {}).get("scrapbook", {}).get("name", "")))
        elif "image/png" in data:
            parts.append(_img(data["image/png"]))
        elif out.get("output_type") == "stream" and out.get("name") == "stdout":
            parts.append(f"<pre>{html.escape(''.join(out['text']))}</pre>")
        elif "text/html" in data and not out.get("metadata", {}).get("scrapbook"):
            parts.append("".join(data["text/html"]))
        elif "text/plain" in data and out.get("output_type") == "execute_result":
            parts.append(f"<pre>{html.escape(''.join(data['text/plain']))}</pre>")
    return "\n".join(parts)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="reveal.js/dist/reset.css">
<link rel="stylesheet" href="reveal.js/dist/reveal.css">
<link rel="stylesheet" href="reveal.js/dist/theme/white.css">
<style>.reveal img{{max-height:62vh;}} .reveal pre{{font-size:0.45em;box-shadow:none;}}
.reveal section{{font-size:0.8em;}} .reveal figcaption{{font-size:0.6em;color:#555;}}</style>
</head><body><div class="reveal"><div class="slides">
{slides}
</div></div>
<script src="reveal.js/dist/reveal.js"></script>
<script src="reveal.js/plugin/math/math.js"></script>
<script>
Reveal.initialize({{hash: true, center: false, width: 1280, height: 800,
  mathjax3: {{mathjax: 'mathjax/tex-chtml.js', tex: {{inlineMath: [['\\\\(', '\\\\)']]}}}},
  plugins: [RevealMath.MathJax3]}});
</script></body></html>
"""


def deck(path: Path) -> tuple[str, int]:
    """The deck's HTML for the notebook at ``path`` and its number of slides."""
    nb = nbformat.read(path, as_version=4)
    store = glue_store(nb)
    slides: list[list[str]] = []
    for cell in nb.cells:
        kind = cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
        if kind not in SLIDE_TYPES:
            continue
        body = render_cell(cell, store)
        if kind == "fragment" and slides:
            slides[-1].append(f'<div class="fragment">{body}</div>')
        else:
            slides.append([body])
    if not slides:
        raise ValueError(f"{path.name} marks no cell for slides (cell metadata slideshow.slide_type)")
    title = next((line.lstrip("# ") for line in "".join(nb.cells[0].source).splitlines() if line.startswith("#")), path.stem)
    sections = "\n".join(f"<section>\n{''.join(s)}\n</section>" for s in slides)
    return PAGE.format(title=html.escape(title), slides=sections), len(slides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "slides")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every toc notebook")
    args = parser.parse_args(argv)
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    reveal = reveal_dir()
    for sub in ("dist", "plugin"):
        shutil.copytree(reveal / sub, out / "reveal.js" / sub)
    shutil.copy(reveal / "LICENSE", out / "reveal.js" / "LICENSE")
    shutil.copytree(mathjax_dir(), out / "mathjax")
    links = []
    for path in args.notebooks or toc_notebooks():
        page, count = deck(path)
        (out / f"{path.stem}.html").write_text(page, encoding="utf-8")
        links.append(f'<li><a href="{path.stem}.html">{html.escape(path.stem)}</a> ({count} slides)</li>')
        print(f"{path.stem}: {count} slides")
    (out / "index.html").write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>fisherbook slides</title></head>"
        f"<body><h1>fisherbook: slide decks</h1><ul>{''.join(links)}</ul></body></html>",
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
