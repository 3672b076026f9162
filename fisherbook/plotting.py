"""The house figure style of the book, and small figure helpers several chapters share.

Every chapter calls :func:`use_style` once at its top. The style fixes figure sizes, fonts,
and a colour cycle that stays distinguishable in greyscale print: each colour in the cycle
has a distinct lightness, and :func:`line_styles` pairs each with its own dash pattern.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import cycle
from typing import Any

import matplotlib as mpl
from cycler import cycler

#: Colour cycle (Okabe–Ito, reordered so that successive colours differ in lightness:
#: black, orange, blue, vermilion, bluish green, sky blue, reddish purple, yellow).
COLORS: tuple[str, ...] = (
    "#000000",
    "#E69F00",
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#56B4E9",
    "#CC79A7",
    "#F0E442",
)

#: Dash patterns matched one-to-one with :data:`COLORS`, so lines stay apart in greyscale.
LINESTYLES: tuple[Any, ...] = (
    "-",
    "--",
    "-.",
    ":",
    (0, (5, 1)),
    (0, (3, 1, 1, 1, 1, 1)),
    (0, (1, 1)),
    (0, (8, 2, 2, 2)),
)

#: Figure width in inches for a full-width figure; heights follow the golden ratio.
WIDTH: float = 6.4

#: The matplotlib rc settings that :func:`use_style` applies.
STYLE: dict[str, Any] = {
    "figure.figsize": (WIDTH, WIDTH / 1.618),
    "figure.dpi": 150,  # inline and glued figures are stored from the canvas at this resolution
    "savefig.dpi": 150,
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.prop_cycle": cycler(color=list(COLORS)) + cycler(linestyle=list(LINESTYLES)),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "legend.frameon": False,
    "image.cmap": "viridis",
    "mathtext.fontset": "cm",
    "svg.hashsalt": "fisherbook",
}


def use_style() -> None:
    """Apply the book's matplotlib style to the current session.

    Notebooks call this once, after their imports. It updates :data:`matplotlib.rcParams`
    from :data:`STYLE` and returns nothing.

    Examples
    --------
    >>> import matplotlib as mpl
    >>> use_style()
    >>> mpl.rcParams["figure.figsize"] == [WIDTH, WIDTH / 1.618]
    True
    """
    params: dict[Any, Any] = mpl.rcParams  # typed by matplotlib with literal keys; STYLE's keys are plain str
    params.update(STYLE)


def figsize(columns: float = 1.0, aspect: float = 1 / 1.618) -> tuple[float, float]:
    r"""Size in inches of a figure ``columns`` times the house width, with height/width ``aspect``.

    Parameters
    ----------
    columns : float
        Width as a multiple of :data:`WIDTH`; must be positive.
    aspect : float
        Height divided by width; must be positive.

    Returns
    -------
    tuple of float
        ``(width, height)`` in inches.

    Raises
    ------
    ValueError
        If ``columns`` or ``aspect`` is not positive.

    Examples
    --------
    >>> figsize(1.0, 0.5)
    (6.4, 3.2)
    """
    if not columns > 0:
        raise ValueError(f"columns must be > 0, got {columns!r}")
    if not aspect > 0:
        raise ValueError(f"aspect must be > 0, got {aspect!r}")
    width = WIDTH * columns
    return (round(width, 6), round(width * aspect, 6))


def line_styles() -> Iterator[dict[str, Any]]:
    """Endless iterator of ``dict(color=..., linestyle=...)`` pairs of the house cycle.

    Useful where a plot is drawn with calls that do not advance the axes' own cycle.

    Examples
    --------
    >>> next(line_styles())
    {'color': '#000000', 'linestyle': '-'}
    """
    return cycle({"color": c, "linestyle": ls} for c, ls in zip(COLORS, LINESTYLES))
