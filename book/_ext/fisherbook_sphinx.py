"""Local Sphinx fixes for the book's HTML, so that pages load without console errors.

- sphinx-thebe registers its inline configuration script once per read of the environment, so
  pages can carry two ``const THEBE_JS_URL`` declarations, which is a JavaScript error; keep one.
- pydata-sphinx-theme writes an empty colour mode when none is configured, and logs
  "Got invalid theme mode" on every page; use "auto" (follow the reader's system setting).
- sphinx-proof renders a proof as an admonition without a title (it prefixes "Proof." to the first
  paragraph), and sphinx-togglebutton's script throws on a ``dropdown`` admonition without one; a
  proof given ``:class: dropdown`` gets the title "Proof" (the prefix moves into it), so that long
  proofs fold away behind a button as the book's long derivations should; and its own id, since
  sphinx-proof gives every proof the id "proof" and the script finds a toggle's target by id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes

PROOF_PREFIX = "Proof."


def _title_dropdown_proofs(app, doctree) -> None:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", app.env.docname).strip("-")
    count = 0
    for adm in list(doctree.findall(nodes.admonition)):
        classes = adm.get("classes", [])
        if "proof" not in classes or "dropdown" not in classes or isinstance(adm.next_node(), nodes.title):
            continue
        first = adm.next_node(nodes.paragraph)
        if first is not None and first.children and isinstance(first[0], nodes.Text):
            text = first[0].astext()
            if text.startswith(PROOF_PREFIX):
                rest = text[len(PROOF_PREFIX):].lstrip()
                if rest:
                    first.replace(first[0], nodes.Text(rest))
                elif len(first.children) == 1:
                    first.parent.remove(first)  # the prefix alone: the proof's text began on the next line
                else:
                    first.remove(first[0])
        adm.insert(0, nodes.title("", "Proof"))
        count += 1
        adm["ids"] = [f"proof-{slug}-{count}"]


def _dedupe_scripts(app, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    scripts = context.get("script_files")
    if scripts:
        seen = set()
        unique = []
        for script in scripts:
            # the same inline script can be registered with filename None and with ""
            filename = str(getattr(script, "filename", script) or "")
            key = (filename, repr(sorted(getattr(script, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                unique.append(script)
        scripts[:] = unique
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def _static_path(app, config) -> None:
    config.html_static_path.append(str(Path(__file__).parent / "static"))


def setup(app) -> dict[str, Any]:
    app.connect("config-inited", _static_path)
    app.add_css_file("fisherbook.css")
    app.connect("html-page-context", _dedupe_scripts, priority=1)
    app.connect("doctree-read", _title_dropdown_proofs)  # emit_firstresult: run first, return None
    return {"parallel_read_safe": True, "parallel_write_safe": True}
