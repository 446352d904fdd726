# The two commands: `make test` and `make sweep`. Everything else sets up for them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch first and pinned, so pip takes the CPU wheel where one lies on disk instead of a multi-GB CUDA build;
# on a GPU box: make TORCH_SPEC='torch>=2.6' ...
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: test lint sweep world world-check bench gpu-check ray-up clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '$(TORCH_SPEC)'
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

# The main job as a Ray job: joins the head at 127.0.0.1:8265, else starts one (token auth on, dashboard on loopback)
# and stops only that head afterwards. The job runs from an upload of this checkout; results go to SWEEP_OUTPUT.
SWEEP_OUTPUT ?= $(CURDIR)/runs/sweep
SWEEP_ARGS ?= --overwrite
sweep: $(STAMP)
	RAY_AUTH_MODE=token $(PY) jobs/submit_sweep.py --output $(SWEEP_OUTPUT) $(SWEEP_ARGS)

world: $(STAMP)
	$(PY) jobs/build_world.py --out alignray/assets/tiny-imdb

# The GPU paths on one GPU (~8 min, downloads nothing); without a GPU it says so in one line and exits 0.
gpu-check: $(STAMP)
	$(PY) jobs/gpu_check.py

bench: $(STAMP)
	for b in $(filter-out bench/common.py,$(wildcard bench/*.py)); do $(PY) $$b || exit 1; done

# A local head with token auth on and the dashboard on loopback; then RAY_AUTH_MODE=token ray job submit ...
ray-up: $(STAMP)
	(umask 077 && RAY_AUTH_MODE=token $(VENV)/bin/ray get-auth-token --generate > /dev/null)  # only where none exists; owner-only
	RAY_AUTH_MODE=token $(VENV)/bin/ray start --head --dashboard-host 127.0.0.1

clean-venv:
	rm -rf $(VENV)
