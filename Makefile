# Set-up on a fresh machine is part of each target: a virtual environment in .venv with cacflow installed.
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2
TORCH_VERSION ?= 2.13.0

.PHONY: demo test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of PyTorch first (pinned: this version is a local CPU wheel here; an unpinned torch pulls CUDA)
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed  ## run the workflow on the embedded synthetic demo cohort
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --cores $(CORES)

test: $(VENV)/.installed  ## the whole test suite (unit, real-data, end-to-end): what CI runs
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest

test-fast: $(VENV)/.installed  ## the edit-test loop: unit and small integration tests (no e2e, no training runs)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -m "not e2e and not slow"

lint: $(VENV)/.installed  ## ruff on the package and tests, snakefmt and snakemake --lint on the workflow
	$(VENV)/bin/ruff check src tests benchmarks workflow/scripts
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --lint

bench: $(VENV)/.installed  ## stage timings on the demo cohort
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) benchmarks/preprocess_stages.py

clean:
	rm -rf results resources logs benchmarks/out .snakemake  # logs/ holds the job logs and benchmark records
