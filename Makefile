# Thin wrappers; see README.md. `make demo` and `make test` set everything up on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_MODEL ?=
SUITE ?=
ARGS ?=

TORCH_CUDA_INDEX ?= https://download.pytorch.org/whl/cu128

.PHONY: setup demo test test-fast bench gpu-check clean

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

# On a CUDA machine: the CUDA build of the pinned torch (make's set-up installs the CPU build where
# the index offers it), then the GPU check; without a GPU it runs what it can on the CPU and says so.
gpu-check: $(STAMP)
	@if command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then \
		echo "installing the CUDA build of torch==2.13.0 from $(TORCH_CUDA_INDEX)"; \
		$(PY) -m pip install --quiet --disable-pip-version-check --force-reinstall torch==2.13.0 --index-url $(TORCH_CUDA_INDEX); \
	fi
	$(PY) -m benchmarks gpu $(ARGS)

clean:
	rm -rf saved log log_tensorboard .pytest_cache
