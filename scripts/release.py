"""Collect the release assets into ``_build/release/`` (``make release``; the publish workflow).

Expects ``make pdf``, ``make slides`` and ``make student`` to have run. Writes

* ``fisherbook-<version>.pdf``: the printed book;
* ``fisherbook-<version>-student-edition.zip``: the chapters without solutions (``book/*.ipynb``,
  outputs cleared) and a README saying how to run them: on Colab (each chapter's install cell
  fetches the package) or locally after ``pip install`` of this release;
* ``fisherbook-<version>-slides.zip``: the reveal.js decks, offline (reveal.js and MathJax inside);
* the wheel ``fisherbook-<version>-py3-none-any.whl`` (``pip wheel --no-deps``).

The version is ``fisherbook.__version__``; on a tag ``vX.Y.Z`` (``GITHUB_REF_NAME`` in the
workflow) it must equal ``X.Y.Z``, so a release cannot ship a package that calls itself otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import repository  # noqa: E402
from notebooks import ROOT  # noqa: E402

BUILD = ROOT / "_build"
OUT = BUILD / "release"


def version() -> str:
    """``__version__`` of ``fisherbook/__init__.py``, read without importing the package."""
    text = (ROOT / "fisherbook" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if match is None:
        raise SystemExit("fisherbook/__init__.py defines no __version__")
    return match.group(1)


def check_tag(ver: str, ref: str | None) -> None:
    """On a release tag ``vX.Y.Z``, ``X.Y.Z`` must be the package version."""
    if ref and re.fullmatch(r"v\d.*", ref) and ref[1:] != ver:
        raise SystemExit(f"tag {ref} does not match fisherbook.__version__ {ver!r}: bump the version or the tag")


STUDENT_README = """# fisherbook {ver}: student edition

The chapters of the book without the solutions to their exercises.

- **Colab**: upload a notebook; its first cell installs the `fisherbook` package when it is missing.
- **Locally** (Python 3.11): `pip install "fisherbook @ git+{repo}@v{ver}" jupyterlab`, then
  `jupyter lab book/`.

The book itself, with the solutions: {repo}
"""


def zip_folder(folder: Path, out: Path, prefix: str, extra: dict[str, str] | None = None) -> int:
    """Zip every file under ``folder`` (and the ``extra`` name -> text files) below the top folder
    ``prefix``; return the file count."""
    if not folder.is_dir():
        raise SystemExit(f"{folder} is missing: run the make target that builds it")
    n = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and ".ipynb_checkpoints" not in path.parts:
                z.write(path, f"{prefix}/{path.relative_to(folder)}")
                n += 1
        for name, text in (extra or {}).items():
            z.writestr(f"{prefix}/{name}", text)
            n += 1
    return n


def build_wheel(out: Path) -> Path:
    """``pip wheel --no-deps`` of the package into ``out``; setuptools' ``build/`` folder is removed
    again unless it was there before. Returns the wheel's path."""
    scratch = ROOT / "build"
    existed = scratch.exists()
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", str(out), str(ROOT)], check=True, timeout=600)
    finally:
        if not existed:
            shutil.rmtree(scratch, ignore_errors=True)
    (wheel,) = out.glob(f"fisherbook-{version()}-*.whl")
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    ver = version()
    check_tag(ver, os.environ.get("GITHUB_REF_NAME"))
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pdf = BUILD / "pdf" / "fisherbook.pdf"
    if not pdf.exists():
        raise SystemExit("no _build/pdf/fisherbook.pdf: run `make pdf`")
    shutil.copy(pdf, out / f"fisherbook-{ver}.pdf")
    n = zip_folder(ROOT / "_student", out / f"fisherbook-{ver}-student-edition.zip", f"fisherbook-{ver}-student",
                   extra={"README.md": STUDENT_README.format(ver=ver, repo=repository.url())})
    m = zip_folder(BUILD / "slides", out / f"fisherbook-{ver}-slides.zip", f"fisherbook-{ver}-slides")
    build_wheel(out)
    for path in sorted(out.iterdir()):
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size / 1e6:.1f} MB")
    print(f"student edition: {n} files; slides: {m} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
