"""Build a reveal.js lecture deck per chapter from the notebook's own structure, served from the build.

For every toc chapter this writes ``_build/slides/<chapter>.html`` (see :func:`structural_slides`):
a title slide and an outline; every sphinx-proof statement (definition, theorem, proposition,
lemma) on a slide of its own, followed by the display equations of its proof ("key steps");
every labelled display equation of the prose with its lead-in sentence; every ``glue:figure``
with its caption; every exercise (never a solution); a slide opening each section that has no
statement or equation; and, as speaker notes (press ``S``), the prose that surrounds each slide.
Cell metadata overrides: ``slide_type: slide``/``subslide`` forces a cell in, ``fragment`` adds it
to the slide before, ``skip`` (and the Colab install cell) leaves it out. Decks hold 15-30 slides
(:data:`MIN_SLIDES`, :data:`MAX_SLIDES`), about a 50-minute lecture.

Markdown is rendered to HTML (MyST roles, citations and glue references resolved, maths left for
MathJax); code cells show their outputs. reveal.js (from the npm registry, ``REVEAL_VERSION``) and
MathJax (the copy the book serves) are copied next to the decks, so the slides need no network in
the lecture hall.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
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
            ["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(CACHE),
             f"reveal.js@{REVEAL_VERSION}"],
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
                data = out.get("data", {})
                store[name] = {k.replace("application/papermill.record/", ""): v for k, v in data.items()}
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


#: Citation key -> "Surname (year)" from book/references.bib; label -> what a reference to it
#: should read (set per deck by :func:`deck`, so slides read "Definition (regularity)", not a key).
CITATIONS: dict[str, str] = {}
LABELS: dict[str, str] = {}


def load_citations(bib: Path = ROOT / "book" / "references.bib") -> dict[str, str]:
    """Citation key -> "Surname year" (author-year, as the book cites), from the bibliography."""
    found = {}
    for entry in re.finditer(r"@\w+\{([^,\s]+),(.*?)\n\}", bib.read_text(encoding="utf-8"), re.S):
        author = re.search(r"author\s*=\s*[{\"](.+?)[}\"],?\s*\n", entry.group(2), re.S)
        year = re.search(r"year\s*=\s*[{\"]?(\d{4})", entry.group(2))
        if not author:
            continue
        people = [a.strip() for a in re.split(r"\s+and\s+", author.group(1).replace("{", "").replace("}", ""))]
        surname = [p.split(",")[0].strip() if "," in p else p.split()[-1] for p in people if p]
        if len(surname) <= 2:
            who = " and ".join(surname)
        else:
            who = f"{surname[0]} et al."
        found[entry.group(1)] = f"{who} {year.group(1) if year else ''}".strip()
    return found


def notebook_labels(nb: nbformat.NotebookNode) -> dict[str, str]:
    """Label -> reading, for the labels a notebook defines: headings, statements, equations."""
    labels = {}
    for cell in nb.cells:
        source = "".join(cell.source)
        for m in re.finditer(r"^\(([\w:-]+)\)=\s*\n+#+ (.+)$", source, re.M):
            labels[m.group(1)] = m.group(2).strip()
        for m in DIRECTIVE.finditer(source):
            name, arg = m.group(2).strip(), m.group(3).strip()
            label = re.search(r"^:label:\s*(\S+)", m.group(4), re.M)
            if label:
                kind = STATEMENTS.get(name, name.split(":")[-1].capitalize())
                labels[label.group(1)] = f"{kind} ({arg})" if arg else kind
        for m in DISPLAY.finditer(source):
            if m.group(3):
                labels[m.group(3)] = "the equation above"
    return labels


def _pretty_label(label: str, kind: str) -> str:
    words = re.sub(r"^(ch|sec|def|thm|prop|lem|eq|fig|ex|tab)-(ch\d+-)?", "", label).replace("-", " ")
    return f"({words})" if kind == "eq" else words


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
            names = [CITATIONS.get(k.strip(), k.strip()) for k in content.split(",")]
            if kind in {"cite:p", "cite", "cite:ps"}:
                return "(" + "; ".join(names) + ")"
            return "; ".join(re.sub(r" (\d{4})$", r" (\1)", n) for n in names)  # cite:t: Fisher (1925)
        shown = re.match(r"^(.*?)\s*<.*>$", content)
        if shown:
            return shown.group(1)
        if kind in {"ref", "numref", "eq", "doc", "prf:ref"}:
            return LABELS.get(content.strip(), _pretty_label(content.strip(), kind))
        return content

    return ROLE.sub(role, text)


MD = MarkdownIt("commonmark", {"html": True}).enable("table").use(dollarmath_plugin, double_inline=True)
MD.add_render_rule("math_inline", lambda self, tokens, idx, options, env: f"\\({html.escape(tokens[idx].content)}\\)")
def _display(self, tokens, idx, options, env) -> str:
    return f"<p>\\[{html.escape(tokens[idx].content)}\\]</p>"


MD.add_render_rule("math_block", _display)
MD.add_render_rule("math_block_label", _display)


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
<style>.reveal img{{max-height:58vh;max-width:100%;}} .reveal pre{{font-size:0.45em;box-shadow:none;}}
.reveal section{{font-size:0.72em;text-align:left;}} .reveal h1,.reveal h2{{text-align:left;}}
.reveal h1,.reveal h2,.reveal h3{{text-transform:none;}} .reveal h2{{font-size:1.4em;}}
.reveal h3{{font-size:1.1em;color:#444;}}
.reveal figure{{margin:0;text-align:center;}} .reveal figcaption{{font-size:0.6em;color:#555;text-align:left;}}
.reveal section.dense{{font-size:0.56em;}} .reveal .block{{border-left:4px solid #2a76dd;padding:0.2em 0.8em;
background:#f4f8fe;}} .reveal .block.exercise{{border-color:#d98a00;background:#fff8ec;}}
.reveal .block-title{{font-weight:bold;}} .reveal table{{font-size:0.6em;}}</style>
</head><body><div class="reveal"><div class="slides">
{slides}
</div></div>
<script src="reveal.js/dist/reveal.js"></script>
<script src="reveal.js/plugin/math/math.js"></script>
<script src="reveal.js/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({{hash: true, center: false, width: 1280, height: 800, slideNumber: 'c/t',
  mathjax3: {{mathjax: 'mathjax/tex-chtml.js', tex: {{inlineMath: [['\\\\(', '\\\\)']]}}}},
  plugins: [RevealMath.MathJax3, RevealNotes]}});
</script></body></html>
"""

#: Slides per chapter deck: about one per 2-3 minutes of a 50-minute lecture.
MIN_SLIDES, MAX_SLIDES = 15, 30
#: Statement blocks that get a slide of their own (sphinx-proof), with their display name.
STATEMENTS = {"prf:definition": "Definition", "prf:theorem": "Theorem", "prf:proposition": "Proposition",
              "prf:lemma": "Lemma", "prf:corollary": "Corollary", "prf:assumption": "Assumption"}
#: Speaker notes longer than this many characters of source are cut at a paragraph boundary.
NOTES_CHARS = 2500
DISPLAY = re.compile(r"^\$\$(.+?)\$\$[ \t]*(\(([\w:.-]+)\))?[ \t]*$", re.M | re.S)


@dataclass
class Slide:
    """One slide: a title, its HTML body, speaker notes (MyST source) and what it shows."""

    title: str
    body: str
    notes: list[str] = field(default_factory=list)
    kind: str = "text"
    figures: set[str] = field(default_factory=set)

    def html(self, store: dict[str, dict]) -> str:
        text = re.sub(r"<[^>]+>", "", self.body)
        dense = ' class="dense"' if len(text) > 700 else ""
        notes = _notes_html(self.notes, store)
        head = f"<h2>{html.escape(self.title)}</h2>\n" if self.title else ""
        return f"<section{dense}>\n{head}{self.body}\n{notes}</section>"


def _notes_html(notes: list[str], store: dict[str, dict]) -> str:
    kept, size = [], 0
    for para in (p for n in notes for p in re.split(r"\n\s*\n", n) if p.strip()):
        if size + len(para) > NOTES_CHARS:
            break
        kept.append(para)
        size += len(para)
    if not kept:
        return ""
    return f'<aside class="notes">{MD.render(myst_to_markdown(chr(10).join(kept), store))}</aside>\n'


def _is_skipped(cell: dict) -> bool:
    meta = cell.get("metadata", {})
    tags = meta.get("tags", [])
    return meta.get("slideshow", {}).get("slide_type") == "skip" or "solution" in tags or "remove-cell" in tags


def _directive_name(m: re.Match) -> str:
    return m.group(2).strip()


def _display_equations(text: str) -> list[str]:
    return [f"$${m.group(1)}$$" for m in DISPLAY.finditer(text)]


def _lead_in(prose: str) -> str:
    """The last sentence of ``prose`` before a display equation, if short (the slide's caption)."""
    para = re.split(r"\n\s*\n", prose.strip())[-1] if prose.strip() else ""
    if para.startswith(("#", "```", ":::", "$$")):
        return ""
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z])", para)[-1].strip()
    return sentence if 0 < len(sentence) <= 240 else ""


def structural_slides(nb: nbformat.NotebookNode, store: dict[str, dict]) -> tuple[str, list[Slide]]:
    """The chapter's title and its slides, read from the notebook's own structure.

    In cell order: the title cell gives the title slide (its first paragraph; the rest are notes);
    every ``##`` heading names the slides after it; each sphinx-proof statement (definition,
    theorem, proposition, lemma, corollary) is a slide and its proof's display equations the next
    one ("key steps"); each labelled display equation in the prose is a slide with its lead-in
    sentence; each ``glue:figure`` is a slide with its caption; each ``exercise`` is a slide (the
    solutions, tagged ``solution``, never are). The prose around them becomes the speaker notes of
    the slide it precedes. Cells marked ``slide_type: slide``/``subslide`` are always shown: a
    marked code cell's figures and printed results become a slide unless a ``glue:figure`` shows
    them; a marked markdown cell with none of the elements above becomes a slide as written;
    ``fragment`` cells join the slide before; ``skip`` cells (and the Colab install cell) are left out.
    """
    title, section = "", ""
    slides: list[Slide] = []
    starts: dict[str, int] = {}  # section -> index of its first slide
    texts: dict[str, list[str]] = {}  # section -> its prose
    pending: list[str] = []
    glued_figures = {m.group(3).strip() for c in nb.cells if c.cell_type == "markdown"
                     for m in DIRECTIVE.finditer("".join(c.source)) if _directive_name(m) == "glue:figure"}

    def add(slide: Slide) -> None:
        slide.notes = pending[:] + slide.notes
        pending.clear()
        slides.append(slide)

    for cell in nb.cells:
        if _is_skipped(cell):
            continue
        kind = cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
        source = "".join(cell.source)
        if cell.cell_type == "code":
            if kind not in SLIDE_TYPES:
                continue
            names = {o.get("metadata", {}).get("scrapbook", {}).get("name") for o in cell.get("outputs", [])}
            if names - {None} and names - {None} <= glued_figures:
                continue  # its figure gets a slide with the caption
            body = render_cell(cell, store)
            if not body.strip():
                continue
            if kind == "fragment" and slides:
                slides[-1].body += f'\n<div class="fragment">{body}</div>'
            else:
                add(Slide(section, body, kind="output"))
            continue
        if not title:
            heading = re.search(r"^# (.+)$", source, re.M)
            if heading:
                title = heading.group(1).strip()
                rest = re.sub(r"^\([\w:-]+\)=\s*$", "", source[heading.end():], flags=re.M).strip()
                paras = re.split(r"\n\s*\n", rest)
                first = paras[0] if paras else ""
                slides.append(Slide("", f"<h1>{html.escape(title)}</h1>\n" + MD.render(myst_to_markdown(first, store)),
                                    notes=["\n\n".join(paras[1:])], kind="title"))
                continue
        before = len(slides)
        pos = 0
        for m in list(DIRECTIVE.finditer(source)) + [None]:
            prose = source[pos: m.start() if m else len(source)]
            for part in re.split(r"^(## .+)$", prose, flags=re.M):
                if part.startswith("## "):
                    section = re.sub(r"\s*\{[^}]*\}`[^`]*`", "", part[3:]).strip()
                    starts.setdefault(section, len(slides))
                    continue
                texts.setdefault(section, []).append(part)
                last = 0
                for eq in DISPLAY.finditer(part):
                    if eq.group(3):  # a labelled equation: a key result of the section
                        lead = _lead_in(part[last:eq.start()])
                        pending.append(part[last:eq.start()])
                        body = MD.render(myst_to_markdown(lead, store)) if lead else ""
                        body += MD.render(f"$${eq.group(1)}$$")
                        last_slide = slides[-1] if len(slides) > before else None
                        if last_slide and last_slide.kind == "equation" and last_slide.title == section:
                            slides[-1].body += body  # equations of one passage share a slide
                        else:
                            add(Slide(section, body, kind="equation"))
                        last = eq.end()
                pending.append(part[last:])
            if m is None:
                break
            pos = m.end()
            name, arg, body = _directive_name(m), m.group(3).strip(), m.group(4)
            if name in STATEMENTS:
                heading = STATEMENTS[name] + (f" ({arg})" if arg else "")
                inner = MD.render(myst_to_markdown(_strip_options(body), store))
                block = f'<div class="block"><span class="block-title">{html.escape(heading)}.</span> {inner}</div>'
                add(Slide(section, block, kind="statement"))
            elif name == "prf:proof":
                steps = _display_equations(_strip_options(body))
                if steps:
                    add(Slide(f"{section}: key steps" if section else "Key steps",
                              "".join(MD.render(myst_to_markdown(s, store)) for s in steps[:4]),
                              notes=[_strip_options(body)], kind="proof"))
                elif slides:
                    slides[-1].notes.append(_strip_options(body))
            elif name == "glue:figure":
                png = store.get(arg, {}).get("image/png")
                if png:
                    caption = myst_to_markdown(_strip_options(body), store).strip()
                    figure = f"<figure>{_img(png, arg)}<figcaption>{MD.renderInline(caption)}</figcaption></figure>"
                    add(Slide(section, figure, kind="figure", figures={arg}))
            elif name == "exercise":
                inner = MD.render(myst_to_markdown(_strip_options(body), store))
                add(Slide("Exercise", f'<div class="block exercise">{inner}</div>', kind="exercise"))
            elif name in {"math"}:
                pending.append(body)
        if kind in {"slide", "subslide"} and len(slides) == before:
            add(Slide("", MD.render(myst_to_markdown(source, store)), kind="marked"))
    if slides and pending:
        slides[-1].notes.extend(pending)
    # a section without a statement or equation of its own opens with its idea: its first
    # paragraph and first display equations
    # (last section first, so that sections starting at the same index keep their order)
    for _, (name, start) in sorted(enumerate(starts.items()), key=lambda e: (-e[1][1], -e[0])):
        shown = {s.kind for s in slides if s.title.startswith(name)}
        if name.lower() in {"exercises", "summary"} or shown & {"statement", "equation", "proof", "marked"}:
            continue
        text = re.sub(r"^```\{index\}.*?^```\s*$", "", "\n\n".join(texts.get(name, [])), flags=re.M | re.S).strip()
        paras = [p for p in re.split(r"\n\s*\n", text) if p.strip() and not p.lstrip().startswith("$$")]
        if not paras:
            continue
        shown_paras = []
        for para in paras:  # the opening, up to ~400 characters of it (a code listing included)
            if para.lstrip().startswith((":::", "```{")) or (shown_paras and sum(map(len, shown_paras)) > 300):
                break
            shown_paras.append(para)
        body = MD.render(myst_to_markdown("\n\n".join(shown_paras), store))
        body += "".join(MD.render(e) for e in _display_equations(text)[:2])
        slides.insert(start, Slide(name, body, notes=paras[len(shown_paras):], kind="section"))
    return title, slides


def _strip_options(body: str) -> str:
    lines = body.splitlines()
    while lines and re.match(r"^:[a-z-]+:", lines[0]):
        lines.pop(0)
    return "\n".join(lines)


def fit(slides: list[Slide], title: str) -> list[Slide]:
    """An outline slide after the title; then hold the deck to :data:`MAX_SLIDES` by folding
    section-opening slides, then equation slides of the sections with the most slides, then (for a
    chapter with many results) proofs' key-steps slides, into the notes of the slide before."""
    sections = list(dict.fromkeys(s.title for s in slides if s.title and s.kind != "exercise"))
    if len(slides) < MAX_SLIDES and sections:
        items = "".join(f"<li>{html.escape(t)}</li>" for t in sections if not t.endswith("key steps"))
        slides.insert(1, Slide("Outline", f"<ol>{items}</ol>", kind="outline"))
    while len(slides) > MAX_SLIDES:
        equations = [i for i, s in enumerate(slides) if s.kind == "section"] or [
            i for i, s in enumerate(slides) if s.kind == "equation"] or [
            i for i, s in enumerate(slides) if s.kind == "proof"]  # last: key steps join the notes
        if not equations:
            # a chapter with very many results: two exercises share a slide (each keeps its block)
            pairs = [i for i in range(len(slides) - 1)
                     if slides[i].kind == "exercise" and slides[i + 1].kind == "exercise"]
            if not pairs:
                break
            i = pairs[0]
            nxt = slides.pop(i + 1)
            slides[i].body += nxt.body
            slides[i].notes.extend(nxt.notes)
            slides[i].kind = "exercises"  # not paired again
            continue
        # the equation slide whose section already has the most slides goes first
        counts = {t: sum(s.title == t for s in slides) for t in sections}
        drop = max(equations, key=lambda i: (counts.get(slides[i].title, 0), i))
        gone = slides.pop(drop)
        target = slides[drop - 1] if drop > 0 else slides[0]
        target.notes.extend(gone.notes)
    return slides


def deck(path: Path) -> tuple[str, int]:
    """The deck's HTML for the notebook at ``path`` and its number of slides."""
    nb = nbformat.read(path, as_version=4)
    store = glue_store(nb)
    CITATIONS.clear()
    CITATIONS.update(load_citations())
    LABELS.clear()
    LABELS.update(notebook_labels(nb))
    title, slides = structural_slides(nb, store)
    if not slides:
        raise ValueError(f"{path.name} has nothing for slides")
    slides = fit(slides, title)
    sections = "\n".join(s.html(store) for s in slides)
    return PAGE.format(title=html.escape(title or path.stem), slides=sections), len(slides)


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
