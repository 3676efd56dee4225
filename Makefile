PY ?= python
.DEFAULT_GOAL := help

help:  ## list targets
	@grep -E '^[a-z%-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

install:  ## install torch (CPU wheel here) and the project with dev tools
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev]"

test:  ## fast test suite: no slow, integration (subprocess, multirun) or slurm tests
	$(PY) -m pytest -m "not slow and not integration and not slurm" -q -n auto --durations=5

test-all:  ## every test, the slow end-to-end ones too, on every core (the README's test command)
	$(PY) -m pytest -q -n auto --dist loadgroup

train:  ## main job on the embedded toy corpus (override with ARGS="key=value ...")
	$(PY) run.py $(ARGS)

SWEEP_ARGS ?= hydra/launcher=joblib hydra.launcher.n_jobs=2

sweep:  ## the card's grid: 3 schemes x 50/80/90%, 2 parallel jobs (add ARGS="data=multi30k ...")
	$(PY) run.py -m prune.scheme=blind,uniform,distribution prune.pct=50,80,90 $(SWEEP_ARGS) $(ARGS)

sweep-%:  ## a preset of conf/sweep/, e.g. make sweep-schemes, sweep-snip_init, sweep-class_sensitivity
	$(PY) run.py -m +sweep=$* $(SWEEP_ARGS) $(ARGS)

sweep-snip:  ## SNIP vs random at init across initialisations (= sweep-snip_init)
	$(PY) run.py -m +sweep=snip_init $(SWEEP_ARGS) $(ARGS)

STUDY ?= study
DATA_ROOT ?= ../shared/data/multi30k
#: in the order they run: the headline and the cheap curves first, full trainings from scratch last
STUDY_PRESETS ?= study_control study_oneshot study_headline study_recipe study_no_retrain study_gradual study_no_retrain_controls study_obd_all \
	study_obs study_obs_retrain study_rpp_lambda study_rpp study_l1_lambda study_l1 study_size_dense study_size_pruned study_sensitivity study_methods study_schedules study_rpp_equal study_l1_equal study_sgd_no_retrain study_sgd study_rewind study_snip study_snip_init \
	study_snip_data study_bf16

CKPT ?=
#: what the GPU machine's image lacks (it has torch, lightning, sacrebleu, matplotlib, pytest); pure Python
DEVICE_WHEELS ?= hydra-core==1.3.2 omegaconf==2.3.0 sacremoses==0.1.1 hydra-joblib-launcher==1.2.0
device-data:  ## device/ (git-ignored) for a GPU session's carry: Multi30k, a weights-only CKPT, wheels (README "On a GPU")
	@test -n "$(CKPT)" || { echo "CKPT=path/to/best.ckpt is required (e.g. a dense cache entry's)"; exit 2; }
	mkdir -p device/whl && rm -rf device/multi30k && cp -r $(DATA_ROOT) device/multi30k
	$(PY) -c "import sys, torch; c = torch.load(sys.argv[1], map_location='cpu', weights_only=True); \
	[c.pop(k, None) for k in ('optimizer_states', 'lr_schedulers', 'loops', 'callbacks')]; torch.save(c, 'device/dense.ckpt')" $(CKPT)
	@d=$$(dirname $(CKPT)); rm -rf device/dense_entry; if [ -f $$d/config.yaml ] && [ -f $$d/results.json ]; then \
	  mkdir device/dense_entry && cp $$d/config.yaml $$d/results.json device/dense_entry/ && basename $$d > device/dense_entry/key; \
	  echo "device/dense_entry: the cache entry $$(basename $$d) (its theta0.pt is not carried: no rewind=init there)"; fi
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
	  -d device/whl $(DEVICE_WHEELS)
	$(PY) -m pip wheel -q --no-deps -w device/whl antlr4-python3-runtime==4.9.3  # omegaconf's; an sdist only
	@du -sh device

study:  ## the converged seed study (docs/study.md), one 1-thread job at a time; re-run to continue
	$(PY) -m nmt_prune.study restore docs/study/runs $(STUDY)
	$(PY) -m nmt_prune.study plan $(STUDY) $(STUDY_PRESETS) $(if $(FORCE),,--strict) -- $(ARGS)
	@status=0; for p in $(STUDY_PRESETS); do \
	  $(PY) run.py -m +sweep=$$p data.root=$(DATA_ROOT) threads=1 logger=csv hydra.sweep.dir=$(STUDY)/$$p $(ARGS); \
	  rc=$$?; $(PY) -m nmt_prune.study save $(STUDY) docs/study/runs; \
	  if [ $$rc -ge 128 ]; then exit $$rc; fi; if [ $$rc -ne 0 ]; then status=$$rc; fi; \
	done; $(PY) -m nmt_prune.report docs/study/runs --out docs/study --no-wandb; exit $$status

study-plan:  ## what `make study` would skip, resume, extend and run, changing nothing
	$(PY) -m nmt_prune.study plan $(STUDY) $(STUDY_PRESETS) -- $(ARGS)

study-report:  ## docs/study/ tables and figures from the study's saved and running jobs
	$(PY) -m nmt_prune.study save $(STUDY) docs/study/runs
	$(PY) -m nmt_prune.report docs/study/runs --out docs/study --no-wandb

report:  ## tables and figures of a sweep: make report SWEEP=multirun/<date>/<time>
	@test -n "$(SWEEP)" || { echo "usage: make report SWEEP=<sweep directory>"; exit 2; }
	$(PY) -m nmt_prune.report $(SWEEP)

lint:  ## ruff lint + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:  ## ruff format + autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:  ## remove run outputs and caches
	rm -rf outputs multirun lightning_logs wandb .pytest_cache .ruff_cache  # never the study (STUDY)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install test test-all train sweep sweep-snip study study-plan study-report report lint format clean
