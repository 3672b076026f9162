"""Local Sphinx fixes for the book's HTML, so that pages load without console errors.

- sphinx-thebe registers its inline configuration script once per read of the environment, so
  pages can carry two ``const THEBE_JS_URL`` declarations, which is a JavaScript error; keep one.
- pydata-sphinx-theme writes an empty colour mode when none is configured, and logs
  "Got invalid theme mode" on every page; use "auto" (follow the reader's system setting).
"""

from __future__ import annotations

from typing import Any


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


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe_scripts, priority=1)  # emit_firstresult: run first, return None
    return {"parallel_read_safe": True, "parallel_write_safe": True}
