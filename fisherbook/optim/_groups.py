"""Param-group rules shared by the optimisers (private)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import InvalidArgumentError


def check_model_wide(groups: list[dict[str, Any]], keys: Iterable[str], owner: str) -> None:
    """Every group holds the first group's value of each model-wide setting in ``keys``."""
    first = groups[0]
    for group in groups[1:]:
        for key in keys:
            if group[key] != first[key]:
                raise InvalidArgumentError(
                    f"{key} is a setting of the whole {owner}: every param group must have the first "
                    f"group's value {first[key]!r}, got {group[key]!r}")
