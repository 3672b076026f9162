"""nbval in strict mode, as `make test` runs it, fails on each way a stored notebook can go stale.

Each test runs pytest --nbval in a subprocess on a fixture notebook under tests/fixtures (outside
the toc), with the project's sanitiser and root conftest (glue's image payloads skipped).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "notebooks"


def run_nbval(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "--nbval",
         "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "-q", *extra, str(FIXTURES / name)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_good_notebook_passes_with_glued_figure_and_address() -> None:
    result = run_nbval("good.ipynb")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 passed" in result.stdout


@pytest.mark.slow
def test_edited_stored_output_fails() -> None:
    result = run_nbval("edited_output.ipynb")
    assert result.returncode != 0
    assert "mean = 0.123" in result.stdout  # nbval shows the stored value it could not reproduce


@pytest.mark.slow
def test_raising_cell_fails() -> None:
    result = run_nbval("raising.ipynb")
    assert result.returncode != 0
    assert "ValueError" in result.stdout


@pytest.mark.slow
def test_restyled_glued_figure_passes_only_with_the_conftest_skip() -> None:
    # restyled_figure.ipynb stores a different PNG for its glued figure (as after a style change
    # or on another platform's font rendering). Text outputs still match, so it passes; without
    # the root conftest, glue's PNG payload is compared byte for byte and the notebook fails.
    assert run_nbval("restyled_figure.ipynb").returncode == 0
    result = run_nbval("restyled_figure.ipynb", "--noconftest")
    assert result.returncode != 0
    assert "papermill.record/image/png" in result.stdout
