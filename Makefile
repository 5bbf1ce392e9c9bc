# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch must be installed before anything that depends on torch,
# or pip resolves an unpinned torch with several GB of CUDA packages.
TORCH := torch==2.13.0

.PHONY: venv godot-rl-venvs demo test test-fast bench protos check-protos clean

venv: $(STAMP)

# Three distributions from this checkout: the bridge's wire format (protos/), the Python engine SDK
# (engines/python/, which games install alone) and the trainer, which depends on both.
$(STAMP): pyproject.toml protos/pyproject.toml engines/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ./protos -e ./engines/python -e ".[dev,bench,ray]"
	touch $(STAMP)

# The peer's trainer side, godot-rl's GodotEnv, in venvs of its own for tests/test_godot_rl_peer.py: godot-rl
# 0.8.2 speaks the Godot RL Agents plugin's current protocol (0.7), 0.5.0 its godot3 branch's (0.3). Each goes
# in without its dependencies (stable-baselines3 pulls torch), beside exactly what GodotEnv imports; a changed
# pin here rebuilds them.
GODOT_RL_STAMPS := .venv-godot-rl/.installed .venv-godot-rl-godot3/.installed
godot-rl-venvs: $(GODOT_RL_STAMPS)

.venv-godot-rl/.installed: Makefile
	$(PYTHON) -m venv .venv-godot-rl
	.venv-godot-rl/bin/pip install --quiet gymnasium==1.0.0 numpy
	.venv-godot-rl/bin/pip install --quiet --no-deps godot-rl==0.8.2
	touch $@

.venv-godot-rl-godot3/.installed: Makefile
	$(PYTHON) -m venv .venv-godot-rl-godot3
	.venv-godot-rl-godot3/bin/pip install --quiet gym==0.26.2 numpy
	.venv-godot-rl-godot3/bin/pip install --quiet --no-deps godot-rl==0.5.0
	touch $@

demo: venv
	$(VENV)/bin/sparring train examples/arena.yaml --run-id demo --force
	$(PY) examples/show_arena.py results/demo

# pytest exits 5 when a selection collects no tests; that is not a failure of the suite.
test: venv godot-rl-venvs
	$(PY) -m pytest $(PYTEST_ARGS); status=$$?; if [ $$status -eq 5 ]; then echo "pytest: no tests collected"; status=0; fi; exit $$status

test-fast: PYTEST_ARGS := -m "not slow"
test-fast: test

# Regenerate the bridge's Python code from protos/sparring/v1/*.proto. grpc's generator
# writes an absolute import that only works with protos/ on sys.path; make it relative.
PROTO_OUT ?= protos
protos: venv
	$(PY) -m grpc_tools.protoc -I protos --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) protos/sparring/v1/*.proto
	sed -i 's/^from sparring\.v1 import /from . import /' $(PROTO_OUT)/sparring/v1/*_pb2_grpc.py

# Fails when the committed generated code differs from what `make protos` makes now.
check-protos: venv
	rm -rf build/protos-check && mkdir -p build/protos-check
	$(MAKE) --no-print-directory protos PROTO_OUT=build/protos-check
	for f in build/protos-check/sparring/v1/*.py*; do \
		cmp -s $$f protos/sparring/v1/$$(basename $$f) || { echo "stale generated code: protos/sparring/v1/$$(basename $$f); run make protos"; exit 1; }; \
	done
	@echo "generated protocol code is up to date"

# Each benchmark runs sparring and its peer side by side and ends with one machine-readable line.
bench: venv
	$(PY) benchmarks/ppo_cartpole.py
	$(PY) benchmarks/ppo_acrobot.py
	$(PY) benchmarks/sac_pendulum.py
	$(PY) benchmarks/bridge.py
	$(PY) benchmarks/onnx_latency.py
	$(PY) benchmarks/selfplay.py

clean:
	rm -rf $(VENV) .venv-godot-rl .venv-godot-rl-godot3 results build *.egg-info
