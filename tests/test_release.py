"""The package as released: its metadata, the CHANGELOG, and a wheel that installs and works alone.

The wheel is built with ``pip wheel --no-deps`` (as ``make release`` does) and installed with pip
into a fresh virtual environment that has no fisherbook; its dependencies (torch, numpy, ...) come
from this environment through a ``.pth`` line placed after the new site-packages, so nothing is
downloaded and the wheel's copy of fisherbook is the one imported.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import release  # noqa: E402
import repository  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_project_urls_name_the_books_repository() -> None:
    repo = repository.default_url()
    urls = PYPROJECT["urls"]
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= set(urls)
    assert urls["Repository"] == repo and urls["Issues"] == f"{repo}/issues"
    assert urls["Changelog"].startswith(f"{repo}/blob/")
    owner, name = repository.owner_name(repo)
    assert urls["Homepage"] == f"https://{owner}.github.io/{name}/", "the Pages address of the repository"
    assert all(re.match(r"^https://[\w.-]+(/\S*)?$", u) for u in urls.values())


def test_classifiers_and_python_requirement_agree() -> None:
    classifiers = PYPROJECT["classifiers"]
    assert len(classifiers) == len(set(classifiers))
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert PYPROJECT["requires-python"] == ">=3.11"
    assert "Typing :: Typed" in classifiers and (ROOT / "fisherbook" / "py.typed").exists()


def test_changelog_has_an_entry_for_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", text, re.M)
    assert versions, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' entries"
    assert versions[0][0] == release.version(), "the newest CHANGELOG entry is not fisherbook.__version__"
    assert "## [Unreleased]" in text and "Semantic Versioning" in text


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_environment_and_works(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    wheel = release.build_wheel(dist)  # as make release builds it
    assert wheel.name == f"fisherbook-{release.version()}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "fisherbook").rglob("*.py")}
    assert sources <= set(names), f"modules missing from the wheel: {sorted(sources - set(names))[:5]}"
    assert "fisherbook/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "book/", "scripts/", "benchmarks/"))]
    meta = zipfile.ZipFile(wheel).read(f"fisherbook-{release.version()}.dist-info/METADATA").decode()
    assert f"Project-URL: Repository, {repository.default_url()}" in meta
    assert {"numpy", "scipy", "matplotlib", "torch", "scikit-learn"} <= set(re.findall(r"^Requires-Dist: ([\w-]+)", meta, re.M))

    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    py = env / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, timeout=300)
    deps = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (site / "zz_dependencies.pth").write_text(deps + "\n")  # after the wheel's site-packages: deps only
    check = """
import torch, fisherbook as fb
from pathlib import Path
from torch.distributions import Normal
assert Path(fb.__file__).resolve().is_relative_to(Path(SITE).resolve()), fb.__file__
F = fb.fisher_information(Normal(torch.tensor(0.0), torch.tensor(2.0)))
assert torch.allclose(F, torch.tensor([[0.25, 0.0], [0.0, 0.5]], dtype=F.dtype)), F
from importlib.metadata import version
print(fb.__version__, version("fisherbook"))
""".replace("SITE", repr(str(site)))
    out = subprocess.run([str(py), "-P", "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [release.version(), release.version()]
