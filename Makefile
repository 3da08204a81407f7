# make test       create .venv if needed, install requirements.txt, run the test suite
# make reproduce  the paper end to end at laptop scale, report in results/ (see README)
# make gpu-check  every CUDA path end to end, on a machine with a GPU (scripts/gpu_check.py)
#
# SYSTEM_PYTHON=1, which the NGC image of dockerfiles/FoldDockerfile sets, runs the image's
# own Python instead of a venv: its torch and TensorRT builds are what the GPU paths need,
# and a venv would hide them. The image installs the rest of requirements.txt when built.

PYTHON ?= python3
VENV   ?= .venv

.PHONY: test venv gpu-check

ifeq ($(SYSTEM_PYTHON),1)
PY := $(PYTHON)
venv: ;
else
PY := $(VENV)/bin/python
venv: $(VENV)/.installed

# The stamp is newer than requirements.txt once everything in it is installed.
$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@
endif

test: venv
	$(PY) -m pytest -q tests

gpu-check: venv
	$(PY) -m scripts.gpu_check

# Sizes of `make reproduce`; override on the command line, e.g. `make reproduce SCALE=0.2`.
# Paths are quoted (DATA_ROOT='/x/my data' works); DATASETS and FOLDS are space-separated lists.
# SCALE sizes the generated game training sets (raised per task to MIN_TRAIN_PER_CLASS
# images per class); validation and test sets are generated whole (EVAL_SCALE).
SCALE     ?= 0.05
MIN_TRAIN_PER_CLASS ?= 500
EVAL_SCALE ?= 1
DATASETS  ?=           # empty: V1, V2 and NoScope night (scripts/reproduce.py)
FOLDS     ?= 1 2 3 4
PROFILE   ?= quick
DATA_ROOT ?= data
RESULTS   ?= results
JOBS      ?=           # empty: training jobs at once, one per CPU core without a GPU, else 1

.PHONY: reproduce
reproduce: venv
	$(PY) -m scripts.reproduce --scale '$(strip $(SCALE))' --min-train-per-class '$(strip $(MIN_TRAIN_PER_CLASS))' \
	  --eval-scale '$(strip $(EVAL_SCALE))' $(if $(strip $(DATASETS)),--datasets $(DATASETS)) --folds $(FOLDS) \
	  --profile '$(PROFILE)' --data-root '$(DATA_ROOT)' --out '$(RESULTS)' $(if $(strip $(JOBS)),--jobs '$(strip $(JOBS))')
