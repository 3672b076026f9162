"""Check every DOI in ``book/references.bib`` (``make linkcheck``; the scheduled link-check workflow).

Each ``doi = {...}`` field must be a well-formed DOI (``10.<registrant>/<suffix>``, no URL prefix)
and, unless ``--offline``, be registered: the DOI handle service
(``https://doi.org/api/handles/<doi>``) answers ``responseCode 1`` for a registered DOI and
``100`` for an unknown one. Asking the handle service, not following the DOI to the publisher,
keeps publishers' bot walls (HTTP 403) from reporting a good DOI as broken.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIB = ROOT / "book" / "references.bib"
DOI = re.compile(r"^10\.\d{4,9}/\S+$")
FIELD = re.compile(r"@\w+\{([^,\s]+),|^\s*doi\s*=\s*[{\"]([^}\"]*)[}\"]", re.M | re.I)


def dois(bib: Path = BIB) -> dict[str, str]:
    """Entry key -> DOI, for every entry with a ``doi`` field."""
    found, key = {}, None
    for m in FIELD.finditer(bib.read_text(encoding="utf-8")):
        if m.group(1):
            key = m.group(1)
        elif key is not None:
            found[key] = m.group(2).strip()
    return found


def malformed(entries: dict[str, str]) -> list[str]:
    """Entries whose DOI is not of the form ``10.NNNN/suffix``."""
    return [f"{key}: {doi!r} is not a DOI (10.NNNN/suffix, without https://doi.org/)"
            for key, doi in entries.items() if not DOI.match(doi)]


def registered(doi: str, timeout: float = 20, retries: int = 3) -> bool:
    """Whether the handle service knows ``doi`` (network)."""
    url = "https://doi.org/api/handles/" + urllib.parse.quote(doi, safe="/")
    for attempt in range(retries):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return json.load(response).get("responseCode") == 1
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return False
            if attempt == retries - 1:
                raise
        except urllib.error.URLError:
            if attempt == retries - 1:
                raise
        time.sleep(2 ** attempt)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offline", action="store_true", help="check the form only")
    parser.add_argument("--bib", type=Path, default=BIB)
    args = parser.parse_args(argv)
    entries = dois(args.bib)
    problems = malformed(entries)
    if not args.offline:
        problems += [f"{key}: DOI {doi} is not registered" for key, doi in entries.items()
                     if DOI.match(doi) and not registered(doi)]
    for line in problems:
        print(line)
    print(f"{len(entries)} DOIs checked{' (form only)' if args.offline else ''}: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
