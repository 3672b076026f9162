"""Sphinx extension for the PDF build (``make pdf``): lets the ``singlehtml`` builder render every
node that an extension registered for ``html`` only.

sphinx-proof and sphinx-exercise give their nodes HTML visitors under the ``html`` builder name;
``singlehtml`` looks its handlers up under its own name and fails on ``definition_node``. When
the builder starts, this copies each ``html`` handler that ``singlehtml`` lacks.
"""

from __future__ import annotations

from typing import Any


def _copy_html_handlers(app: Any) -> None:
    handlers = app.registry.translation_handlers
    single = handlers.setdefault("singlehtml", {})
    for node, pair in handlers.get("html", {}).items():
        single.setdefault(node, pair)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _copy_html_handlers)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
