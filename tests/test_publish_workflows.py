"""The GitHub Actions workflows parse, run only `make` targets that exist, and fire when they should.

They cannot run here; keeping every step a `make` command (the same commands a person runs)
means `make test` exercises what CI does, and this test catches a renamed or missing target.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
sys.path.insert(0, str(ROOT / "scripts"))
import check_dois  # noqa: E402
import release  # noqa: E402


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def steps(data: dict) -> list[dict]:
    return [s for job in data["jobs"].values() for s in job.get("steps", [])]


def test_the_three_workflows_exist() -> None:
    assert {p.stem for p in FILES} == {"tests", "publish", "linkcheck"}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_run_step_is_a_make_target_that_exists(path: Path) -> None:
    targets = make_targets()
    runs = [s["run"] for s in steps(load(path)) if "run" in s]
    assert runs, f"{path.name} runs nothing"
    for run in runs:
        for line in filter(None, (l.strip() for l in run.splitlines())):
            words = shlex.split(line)
            assert words[0] == "make", f"{path.name}: step `{line}` is not a make command"
            named = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
            assert named and set(named) <= targets, f"{path.name}: `{line}` names targets not in the Makefile"
            dry = subprocess.run(["make", "-n", *named], cwd=ROOT, capture_output=True, text=True)
            assert dry.returncode == 0, f"make -n {' '.join(named)}: {dry.stderr[-500:]}"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_actions_are_pinned_to_a_major_version(path: Path) -> None:
    uses = [s["uses"] for s in steps(load(path)) if "uses" in s]
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", u) for u in uses), uses


def test_tests_run_the_readme_command_on_every_push_and_pull_request() -> None:
    data = load(WORKFLOWS / "tests.yml")
    assert {"push", "pull_request"} <= set(data["on"])
    readme = (ROOT / "README.md").read_text()
    assert "make test    # run every check that CI runs" in readme
    assert [s["run"] for s in steps(data) if "run" in s] == ["make test"]


def test_publish_builds_site_pdf_and_release_on_main_and_tags() -> None:
    data = load(WORKFLOWS / "publish.yml")
    assert data["on"]["push"]["branches"] == ["main"] and data["on"]["push"]["tags"] == ["v*"]
    runs = [s["run"] for s in steps(data) if "run" in s]
    assert runs == ["make test", "make pdf-test", "make release"]
    uses = [s["uses"].split("@")[0] for s in steps(data) if "uses" in s]
    for action in ("actions/upload-pages-artifact", "actions/deploy-pages", "softprops/action-gh-release"):
        assert action in uses
    assert "tags/v" in data["jobs"]["release"]["if"]
    build = data["jobs"]["build"]
    assert build["steps"][-2]["with"]["path"] == "_build/html"
    assert build["steps"][-1]["with"]["path"] == "_build/release"
    assert "github.repository" in build["env"]["FISHERBOOK_REPOSITORY"]


def test_linkcheck_is_scheduled() -> None:
    data = load(WORKFLOWS / "linkcheck.yml")
    assert data["on"]["schedule"][0]["cron"]
    assert [s["run"] for s in steps(data) if "run" in s] == ["make linkcheck"]


# ---- what the workflows' make targets call ------------------------------------------------------

def test_every_bibliography_doi_is_well_formed() -> None:
    entries = check_dois.dois()
    assert len(entries) >= 10
    assert check_dois.malformed(entries) == []


def test_malformed_doi_is_caught(tmp_path: Path) -> None:
    bib = tmp_path / "r.bib"
    bib.write_text("@article{a,\n  doi = {https://doi.org/10.1/x}\n}\n@book{b,\n  doi = {10.1007/b98854}\n}\n")
    entries = check_dois.dois(bib)
    assert entries == {"a": "https://doi.org/10.1/x", "b": "10.1007/b98854"}
    assert [m.split(":")[0] for m in check_dois.malformed(entries)] == ["a"]


def test_release_refuses_a_tag_that_is_not_the_version() -> None:
    ver = release.version()
    import fisherbook

    assert ver == fisherbook.__version__
    release.check_tag(ver, f"v{ver}")
    release.check_tag(ver, "main")
    release.check_tag(ver, None)
    with pytest.raises(SystemExit, match="does not match"):
        release.check_tag(ver, "v99.0.0")


def test_release_zips_a_folder_under_its_prefix(tmp_path: Path) -> None:
    (tmp_path / "src" / "book").mkdir(parents=True)
    (tmp_path / "src" / "book" / "01.ipynb").write_text("{}")
    (tmp_path / "src" / "book" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "src" / "book" / ".ipynb_checkpoints" / "01-checkpoint.ipynb").write_text("{}")
    import zipfile

    n = release.zip_folder(tmp_path / "src", tmp_path / "out.zip", "fb-1.0", extra={"README.md": "hi"})
    assert n == 2
    assert sorted(zipfile.ZipFile(tmp_path / "out.zip").namelist()) == ["fb-1.0/README.md", "fb-1.0/book/01.ipynb"]
    with pytest.raises(SystemExit, match="missing"):
        release.zip_folder(tmp_path / "nowhere", tmp_path / "x.zip", "p")
