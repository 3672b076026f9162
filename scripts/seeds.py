"""Execute every chapter under several seeds and report which asserts fail (``make seeds``).

Every chapter reads its seed from the environment variable ``FISHERBOOK_SEED`` in its first code
cell (default 0, the stored run; the convention is in ``scripts/notebooks.py``). This script
executes copies of the toc notebooks, in a temporary directory, with ``FISHERBOOK_SEED`` set to
each of the seeds asked for (default 1 to 5), so the stored notebooks are never modified, and
writes ``benchmarks/seeds_report.md``: a chapter × seed table of pass/fail with wall times, and
for each failure the cell, the failing line and the error message. An assert that fails under
some seed marks a claim the chapter cannot make. Not part of CI (it is slow: every chapter five
times).

Usage::

    python scripts/seeds.py                          # every toc chapter, seeds 1..5
    python scripts/seeds.py --seeds 1 2 3 4 5 6 7    # other seeds
    python scripts/seeds.py book/01-definition.ipynb book/02-cramer-rao.ipynb -j 1

``-j`` runs that many notebooks at once (default 1; each kernel uses two threads). The report keeps
the results of chapters not run this time (they are stored in it, in a comment), so chapters can be
run in several sittings; ``--fresh`` starts from an empty report.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebooks import ROOT, run_notebook, toc_notebooks  # noqa: E402

REPORT = ROOT / "benchmarks" / "seeds_report.md"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DATA = re.compile(r"<!-- seeds-results (.*?) -->", re.S)


@dataclass
class Result:
    notebook: str
    seed: int
    ok: bool
    seconds: float
    cell: int | None = None  # index of the failing cell (code and markdown cells counted from 0)
    line: str = ""  # the failing source line, from the traceback
    message: str = ""  # "AssertionError: ..." or the exception's name and value


def failing_line(tb: list[str] | str) -> str:
    """The last ``---->`` line of an IPython traceback (the statement that raised), ANSI removed."""
    text = ANSI.sub("", "\n".join(tb) if isinstance(tb, list) else tb)
    arrows = [ln for ln in text.splitlines() if ln.lstrip().startswith("---->") or ln.lstrip().startswith("--->")]
    if not arrows:
        return ""
    return re.sub(r"^\s*-+>\s*\d*\s*", "", arrows[-1]).strip()


def run_one(path: str, seed: int, timeout: int) -> Result:
    """Execute a copy of ``path`` with ``FISHERBOOK_SEED=seed``; never raises."""
    src = Path(path)
    nb = nbformat.read(src, as_version=4)
    start = time.perf_counter()
    # a sibling of the notebook's folder, so that paths like ../benchmarks/x.json resolve as they do in place
    with tempfile.TemporaryDirectory(prefix=".seeds-", dir=src.resolve().parent.parent) as tmp:
        for item in src.parent.iterdir():  # the notebook's neighbours, for relative paths
            if item.is_file() and item.suffix != ".ipynb":
                shutil.copy(item, tmp)
        try:
            seconds = run_notebook(nb, Path(tmp), timeout, env={"FISHERBOOK_SEED": str(seed)})
            return Result(src.name, seed, True, seconds)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            seconds = time.perf_counter() - start
            for i, cell in enumerate(nb.cells):
                errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
                if errors:
                    e = errors[0]
                    return Result(src.name, seed, False, seconds, i, failing_line(e.get("traceback", [])),
                                  f"{e.get('ename', '')}: {ANSI.sub('', e.get('evalue', ''))}".strip())
            first = str(err).splitlines()[0][:300] if str(err) else ""
            return Result(src.name, seed, False, seconds, None, "", f"{type(err).__name__}: {first}")
        except Exception as err:  # noqa: BLE001 - a report, not a crash, for anything else
            return Result(src.name, seed, False, time.perf_counter() - start, None, "",
                          f"{type(err).__name__}: {err}; {traceback.format_exc(limit=1).splitlines()[-1]}")


def escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def previous_results(path: Path) -> list[Result]:
    """The results stored in an earlier report at ``path`` (none if there is none)."""
    if not path.exists():
        return []
    found = DATA.search(path.read_text())
    return [Result(**r) for r in json.loads(found.group(1))] if found else []


def report(results: list[Result], seeds: list[int], jobs: int, note: str = "") -> str:
    order = {nb.name: i for i, nb in enumerate(toc_notebooks())}
    results = sorted(results, key=lambda r: (order.get(r.notebook, len(order)), r.notebook, r.seed))
    seeds = sorted(set(seeds) | {r.seed for r in results})
    notebooks = list(dict.fromkeys(r.notebook for r in results))
    by = {(r.notebook, r.seed): r for r in results}
    n_fail = sum(not r.ok for r in results)
    lines = [
        "# Seeds report",
        "",
        "Every chapter executed from a fresh kernel with `FISHERBOOK_SEED` set to each seed below "
        "(the stored outputs use seed 0), by `make seeds` (`python scripts/seeds.py`). "
        "A failure is an `assert` (or any error) that does not hold under that seed.",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{jobs} notebook(s) at a time, two threads each; times are wall-clock seconds",
        f"- seeds: {', '.join(map(str, seeds))}",
        *([f"- note: {note}"] if note else []),
        f"- result: {len(results) - n_fail} of {len(results)} runs pass",
        "",
        "| chapter | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "| --- | " + " | ".join("---" for _ in seeds) + " |",
    ]
    for nb in notebooks:
        cells = []
        for s in seeds:
            r = by.get((nb, s))
            if r is None:
                cells.append("")
            else:
                cells.append(f"pass ({r.seconds:.0f} s)" if r.ok else f"**FAIL** cell {r.cell} ({r.seconds:.0f} s)")
        lines.append(f"| `{nb}` | " + " | ".join(cells) + " |")
    failures = [r for r in results if not r.ok]
    lines += ["", "## Failures", ""]
    if not failures:
        lines.append("None: every assert of every chapter run holds under every seed.")
    for r in failures:
        where = f"`{r.notebook}`, seed {r.seed}, cell {r.cell}"
        lines.append(f"- {where}: `{escape(r.line) or '?'}` → {escape(r.message)[:400]}")
    data = json.dumps([dataclasses.asdict(r) for r in results]).replace("--", "\\u002d\\u002d")
    lines += ["", f"<!-- seeds-results {data} -->"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapters to run (default: every toc notebook)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5], help="seeds (default 1 2 3 4 5)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="notebooks executed at once (default 1)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    parser.add_argument("--report", type=Path, default=REPORT, help=f"output (default {REPORT.relative_to(ROOT)})")
    parser.add_argument("--note", default="", help="a line for the report (say, how busy the machine was)")
    parser.add_argument("--fresh", action="store_true", help="forget the results stored in an existing report")
    args = parser.parse_args(argv)
    if 0 in args.seeds:
        parser.error("--seeds: seed 0 is the stored run, which nbval already checks; give other seeds")
    targets = [p.resolve() for p in args.notebooks] or toc_notebooks()
    for p in targets:
        if not p.exists() or p.suffix != ".ipynb":
            parser.error(f"notebooks: {p} is not a notebook")
    jobs = [(str(p), s) for p in targets for s in args.seeds]
    rerun = {(Path(p).name, s) for p, s in jobs}
    kept = [] if args.fresh else [r for r in previous_results(args.report) if (r.notebook, r.seed) not in rerun]
    results: list[Result] = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, p, s, args.timeout) for p, s in jobs]
        for fut in futures:
            r = fut.result()
            results.append(r)
            status = "pass" if r.ok else f"FAIL cell {r.cell}: {r.line} -> {r.message[:200]}"
            print(f"{r.notebook} seed {r.seed}: {status} ({r.seconds:.0f} s)", flush=True)
            args.report.write_text(report(kept + results, args.seeds, args.jobs, args.note))  # as it goes
    print(f"wrote {args.report.relative_to(ROOT) if args.report.is_relative_to(ROOT) else args.report}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
