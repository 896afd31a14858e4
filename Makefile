# Shortcuts; each target says the plain command it runs. A bare `make` lists them (`make help`).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
ARGS ?= --env-id Pendulum-v1 --cuda

.PHONY: help install install-bench install-track train test tensorboard clean bench pendulum-table sweep report
.DEFAULT_GOAL := help

help:  ## list the targets (what a bare `make` does)
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

install:  ## create .venv and install the pinned requirements
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -r requirements.txt

install-bench:  ## also install what benchmarks/report.py (matplotlib) and sweep.py --ray (ray) need
	$(VENV)/bin/pip install -r benchmarks/requirements.txt

install-track:  ## also install wandb, for --track (Weights & Biases)
	$(VENV)/bin/pip install -r requirements-track.txt

train:  ## train DDPG; pass options with ARGS="--env-id HalfCheetah-v5 ..."
	$(PYTHON) ddpg.py $(ARGS)

test:  ## the whole test suite (7 min 5 s at commit 26564ba on 2 CPU cores; a pytest-xdist worker per core)
	$(PYTHON) -m pytest -q tests

tensorboard:  ## watch the runs under runs/
	$(VENV)/bin/tensorboard --logdir runs

clean:  ## remove what runs leave: runs/ (keeps runs/.gitkeep), W&B's offline files (wandb/), caches
	find runs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf wandb .pytest_cache tests/__pycache__ __pycache__ benchmarks/__pycache__

bench:  ## speed and memory against an eager baseline; writes benchmarks/results.md (the longest target: many timed runs)
	$(PYTHON) benchmarks/bench.py

pendulum-table:  ## the default command for seeds 1-5, as the README's table (2 min 42 s on 2 cores at commit 827296c)
	$(PYTHON) benchmarks/pendulum.py --seeds 1 2 3 4 5

SWEEP_ENVS ?= HalfCheetah-v5 Hopper-v5 Walker2d-v5
SWEEP_ARGS ?= --seeds 1 2 3 --jobs 1 --preset mujoco

sweep:  ## envs x seeds as separate runs, with CleanRL's MuJoCo settings and 1M steps each (--preset mujoco; add "-- --total-timesteps N" to SWEEP_ARGS for fewer; put --ray in SWEEP_ARGS, without --jobs, for Ray); re-running skips finished runs and resumes the others
	$(PYTHON) benchmarks/sweep.py --envs $(SWEEP_ENVS) $(SWEEP_ARGS)

report:  ## learning curves (PNG) and a results table from the sweep's runs, into runs/reports/
	$(PYTHON) benchmarks/report.py
