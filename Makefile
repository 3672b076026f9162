# fisherbook: every command sets itself up. `make book` builds the HTML book; `make test` runs
# every check CI runs. Both create (or reuse) .venv and install pinned versions from
# pyproject.toml + constraints.txt, so a fresh machine needs only Python 3.11.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUILD  := _build
JOBS   ?= 2

# The environment notebooks run under, when stored (make execute) and when checked (nbval).
# scripts/notebooks.py sets the same values.
export PYTHONHASHSEED := 0
export OMP_NUM_THREADS := 2
export MKL_NUM_THREADS := 2
export OPENBLAS_NUM_THREADS := 2
export MPLBACKEND := module://matplotlib_inline.backend_inline
export TQDM_DISABLE := 1

NBVAL := -p no:cacheprovider --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=300

.PHONY: help venv book test unit quick lint nbval execute student slides pdf pdf-test linkcheck release colab-cell bench clean

# The repository the launch buttons, the repository button and the Colab cell name: the
# environment (FISHERBOOK_REPOSITORY, or GitHub Actions' GITHUB_REPOSITORY) overrides
# repository.url in _config.yml (scripts/repository.py). The build reads a copy of _config.yml
# with that URL filled in.
BOOK_CONFIG := $(BUILD)/config/_config.yml
JB := $(VENV)/bin/jupyter-book

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
	@touch $@

venv: $(STAMP)  ## create .venv with the pinned dependencies

book: $(STAMP)  ## build the HTML book into _build/html (the main job)
	$(PY) scripts/repository.py config $(BOOK_CONFIG)
	$(JB) build . --config $(BOOK_CONFIG) -n -W --keep-going
	@echo "Open _build/html/index.html, or: $(PY) -m http.server -d _build/html 8000"

test: unit nbval  ## run every check: unit tests, nbval, hygiene, book, slides, student edition, browser
	$(MAKE) --no-print-directory book slides student
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest tests -q -m built_site --ignore=tests/test_pdf.py

unit: lint  ## lint and types, then unit and property tests and doctests
	$(PY) -m pytest tests fisherbook --doctest-modules -n $(JOBS) -q -m "not built_site"

quick: $(STAMP)  ## the unit tests not marked slow (the fast loop while developing)
	$(PY) -m pytest tests fisherbook --doctest-modules -n $(JOBS) -q -m "not built_site and not slow"

lint: $(STAMP)  ## ruff (style, imports, bugs) and mypy (types) over the package
	$(VENV)/bin/ruff check fisherbook tests benchmarks scripts $(wildcard examples)
	$(VENV)/bin/mypy

nbval: $(STAMP)  ## re-execute every toc notebook and compare with its stored outputs
	$(PY) -m pytest $(NBVAL) -n $(JOBS) --dist loadfile -q $$($(PY) scripts/notebooks.py list)

execute: $(STAMP)  ## re-execute every toc notebook in place (NB=book/xx.ipynb for one)
	$(PY) scripts/notebooks.py execute $(NB)

slides: $(STAMP)  ## build reveal.js decks of every chapter into _build/slides (reveal.js from npm)
	$(PY) scripts/slides.py

student: $(STAMP)  ## write the student edition (no solutions) to _student/ and check it executes
	$(PY) scripts/student.py
	$(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-cell-timeout=300 -n $(JOBS) --dist loadfile -q _student/book

pdf: $(STAMP)  ## print the whole book to _build/pdf/fisherbook.pdf (single-page HTML in Chromium)
	$(PY) scripts/repository.py config --pdf $(BUILD)/config-pdf/_config.yml
	$(JB) build . --config $(BUILD)/config-pdf/_config.yml --builder singlehtml --keep-going
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_pdf_tools.sh
	$(PY) scripts/pdf.py

pdf-test: pdf  ## build the PDF and check it (chapters, maths typeset, figures, page references)
	$(PY) -m pytest tests/test_pdf.py -q

linkcheck: $(STAMP)  ## check the book's external links and the bibliography's DOIs (network; weekly workflow)
	$(PY) scripts/repository.py config $(BOOK_CONFIG)
	$(JB) build . --config $(BOOK_CONFIG) --builder linkcheck
	$(PY) scripts/check_dois.py

release: $(STAMP)  ## collect the release assets (PDF, student edition, slides, wheel) into _build/release
	$(PY) scripts/release.py

colab-cell: $(STAMP)  ## insert/refresh each chapter's Colab install cell (scripts/colab_cell.py)
	$(PY) scripts/colab_cell.py

bench: $(STAMP)  ## run the benchmarks and rewrite their reports in benchmarks/
	for b in benchmarks/*.py; do $(PY) $$b; done

clean:  ## remove build outputs (keeps .venv)
	rm -rf $(BUILD) _student .pytest_cache

.PHONY: seeds
SEEDS ?= 1 2 3 4 5
seeds: $(STAMP)  ## run every toc chapter (NB="book/xx.ipynb ..." for some) under SEEDS, write benchmarks/seeds_report.md (slow, not CI)
	$(PY) scripts/seeds.py $(NB) --seeds $(SEEDS) -j $${SEEDS_JOBS:-1}
