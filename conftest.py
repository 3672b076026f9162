"""Root pytest configuration: extends nbval's comparison skip list for myst-nb ``glue``.

``glue`` stores a figure as a ``display_data`` output whose payload lives under
``application/papermill.record/<mimetype>``. nbval skips ``image/png`` but not these
prefixed keys, so every glued figure would differ in its PNG bytes from run to run.
Their text payloads (``application/papermill.record/text/plain``) are still compared.
"""

from __future__ import annotations

import nbval.plugin

GLUE_BINARY_MIMETYPES = (
    "application/papermill.record/image/png",
    "application/papermill.record/image/jpeg",
    "application/papermill.record/image/svg+xml",
)

_original_init = nbval.plugin.IPyNbFile.__init__


def _init_with_glue_skips(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    self.skip_compare = tuple(self.skip_compare) + GLUE_BINARY_MIMETYPES


nbval.plugin.IPyNbFile.__init__ = _init_with_glue_skips
