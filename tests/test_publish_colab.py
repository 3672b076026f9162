"""The Colab install cell (scripts/colab_cell.py) and the one repository URL (scripts/repository.py).

``test_every_chapter_has_the_colab_install_cell`` is strict: it fails until the cell is applied
to the chapters with ``.venv/bin/python scripts/colab_cell.py``. The other tests work on copies.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import colab_cell  # noqa: E402
import hygiene  # noqa: E402
import repository  # noqa: E402
from notebooks import toc_notebooks  # noqa: E402
from student import student_copy  # noqa: E402

NOTEBOOKS = toc_notebooks()
FIXTURE = ROOT / "tests" / "fixtures" / "notebooks" / "good.ipynb"


# ---- the repository URL --------------------------------------------------------------------

def test_environment_overrides_the_config_default() -> None:
    default = repository.default_url()
    assert repository.url({}) == default
    assert repository.url({"GITHUB_REPOSITORY": "someone/fork"}) == "https://github.com/someone/fork"
    both = {"GITHUB_REPOSITORY": "someone/fork", "FISHERBOOK_REPOSITORY": "https://github.com/a/b.git/"}
    assert repository.url(both) == "https://github.com/a/b"
    assert repository.url({"FISHERBOOK_REPOSITORY": "  "}) == default


@pytest.mark.parametrize("bad", ["", "fisherbook", "https://gitlab.com/a/b", "http://github.com/a/b", "a/b/c", "-a/b"])
def test_malformed_repository_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="owner/name"):
        repository.normalise(bad)


def test_build_config_differs_only_in_the_repository(tmp_path: Path) -> None:
    import yaml

    out = tmp_path / "cfg" / "_config.yml"
    assert repository.write_config(out, "someone/fork")
    assert not repository.write_config(out, "someone/fork"), "an unchanged config is rewritten"
    written = yaml.safe_load(out.read_text())
    original = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert written["repository"]["url"] == "https://github.com/someone/fork"
    for name, path in written["sphinx"]["local_extensions"].items():
        assert Path(path).is_absolute() and Path(path) == (ROOT / original["sphinx"]["local_extensions"][name]).resolve()
    for d in (written, original):
        d["repository"].pop("url")
        d["sphinx"].pop("local_extensions")
    assert written == original


# ---- the install cell on copies --------------------------------------------------------------

def _counts(nb) -> list[int | None]:
    return [c.execution_count for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", [FIXTURE, *NOTEBOOKS[:1]], ids=lambda p: p.name)
def test_apply_keeps_the_notebook_clean_and_is_idempotent(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    if any(colab_cell.is_install_cell(c) for c in nb.cells):  # already applied: strip it to test insertion
        nb.cells = [c for c in nb.cells if not colab_cell.is_install_cell(c)]
        for c in nb.cells:
            if c.cell_type == "code":
                c.execution_count -= 1
                for o in c.get("outputs", []):
                    if o.get("output_type") == "execute_result":
                        o["execution_count"] -= 1
        nbformat.write(nb, copy)
    before = nbformat.read(copy, as_version=4)
    assert hygiene.problems(copy) == []
    source = colab_cell.cell_source("someone/fork", "main")
    assert colab_cell.main([str(copy)]) == 0  # uses the URL in force; then refresh with a fork's
    nb = nbformat.read(copy, as_version=4)
    assert colab_cell.apply(nb, source)
    nbformat.write(nb, copy)
    after = nbformat.read(copy, as_version=4)
    assert hygiene.problems(copy) == []
    assert nbformat.validate(after) is None
    installs = [i for i, c in enumerate(after.cells) if colab_cell.is_install_cell(c)]
    assert len(installs) == 1
    cell = after.cells[installs[0]]
    assert cell.source == source and cell.outputs == [] and cell.execution_count == 1
    assert "remove-cell" in cell.metadata.tags and cell.metadata.slideshow.slide_type == "skip"
    assert all(c.cell_type == "markdown" for c in after.cells[: installs[0]]), "install cell is not the first code cell"
    # every other cell unchanged except for its execution count, shifted by one
    others = [c for c in after.cells if not colab_cell.is_install_cell(c)]
    assert [c.source for c in others] == [c.source for c in before.cells]
    assert _counts(nbformat.v4.new_notebook(cells=others)) == [n + 1 for n in _counts(before)]
    def strip(outs):
        return [{k: v for k, v in o.items() if k != "execution_count"} for o in outs]

    for old, new in zip(before.cells, others):
        if old.cell_type == "code":
            assert strip(new.outputs) == strip(old.outputs)
    text = copy.read_bytes()
    assert not colab_cell.apply(after, source), "a second apply changes the notebook"
    nbformat.write(after, copy)
    assert copy.read_bytes() == text
    assert colab_cell.stale(after, source) is None
    assert colab_cell.stale(after, colab_cell.cell_source("other/repo", "main")) == "install cell source is out of date"


def test_two_install_cells_are_refused() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T")])
    colab_cell.apply(nb, "pass")
    nb.cells.append(nbformat.from_dict(dict(nb.cells[1])))
    with pytest.raises(ValueError, match="keep one"):
        colab_cell.apply(nb, "pass")


def _run_cell(source: str, monkeypatch, importable: bool) -> tuple[list, str]:
    calls: list = []

    def fake_run(args, **kwargs):
        calls.append(args)
        monkeypatch.delitem(sys.modules, "fisherbook", raising=False)  # "installed": import works again
        import fisherbook  # noqa: F401

        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    if not importable:
        monkeypatch.setitem(sys.modules, "fisherbook", None)  # makes `import fisherbook` raise ImportError
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        exec(compile(source, "<install cell>", "exec"), {})
    return calls, out.getvalue()


def test_install_cell_is_a_no_op_where_fisherbook_imports(monkeypatch) -> None:
    calls, output = _run_cell(colab_cell.cell_source(), monkeypatch, importable=True)
    assert calls == [] and output == ""


def test_install_cell_installs_from_the_repository_where_fisherbook_is_missing(monkeypatch) -> None:
    calls, output = _run_cell(colab_cell.cell_source("someone/fork", "v1.0"), monkeypatch, importable=False)
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet", "fisherbook @ git+https://github.com/someone/fork@v1.0"]]
    assert output == ""


def test_student_edition_keeps_the_install_cell() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("x = 1", execution_count=1)])
    colab_cell.apply(nb, colab_cell.cell_source())
    assert any(colab_cell.is_install_cell(c) for c in student_copy(nb).cells)


# ---- strict: the chapters carry the cell -----------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_chapter_has_the_colab_install_cell(path: Path) -> None:
    """Fails until ``.venv/bin/python scripts/colab_cell.py`` has been run on the chapters."""
    nb = nbformat.read(path, as_version=4)
    source = colab_cell.cell_source(repository.default_url(), colab_cell.branch())
    why = colab_cell.stale(nb, source)
    assert why is None, f"{path.name}: {why}; run `.venv/bin/python scripts/colab_cell.py`"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert colab_cell.is_install_cell(first_code), f"{path.name}: the install cell is not the first code cell"
