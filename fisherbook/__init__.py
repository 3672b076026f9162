"""fisherbook: Fisher information, computed and tested.

The helper package behind the *fisherbook* textbook. Each module owns one idea
(see ``DESIGN.md``): closed-form and estimated Fisher information of probability
families, Cramér–Rao and asymptotic inference tools, Fisher matrices of torch
models, natural-gradient and K-FAC optimisers, EWC and information geometry.

Examples
--------
>>> import fisherbook as fb
>>> fb.__version__
'0.1.0'
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import plotting

__all__ = ["__version__", "plotting"]
