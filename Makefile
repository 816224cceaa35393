# Thin wrappers; see README.md. `make demo` and `make test` set everything up on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_MODEL ?=
SUITE ?=
ARGS ?=

.PHONY: setup demo test test-fast bench clean

$(STAMP): pyproject.toml setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m recbole_ext.demo $(if $(DEMO_MODEL),--model $(DEMO_MODEL))

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	@test -n "$(SUITE)" || (echo "usage: make bench SUITE=<suite> [ARGS=--quick]"; exit 2)
	$(PY) -m benchmarks $(SUITE) $(ARGS)

clean:
	rm -rf saved log log_tensorboard .pytest_cache
