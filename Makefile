# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch must be installed before anything that depends on torch,
# or pip resolves an unpinned torch with several GB of CUDA packages.
TORCH := torch==2.13.0

.PHONY: venv demo test test-fast bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

demo: venv
	$(VENV)/bin/sparring train examples/tictactoe.yaml --run-id demo --force
	$(PY) examples/show_tictactoe.py results/demo

# pytest exits 5 when a selection collects no tests; that is not a failure of the suite.
test: venv
	$(PY) -m pytest $(PYTEST_ARGS); status=$$?; if [ $$status -eq 5 ]; then echo "pytest: no tests collected"; status=0; fi; exit $$status

test-fast: PYTEST_ARGS := -m "not slow"
test-fast: test

bench: venv
	$(PY) benchmarks/ppo_cartpole.py

clean:
	rm -rf $(VENV) results build *.egg-info
