# make test       create .venv if needed, install requirements.txt, run the test suite
# make reproduce  the paper end to end at laptop scale, report in results/ (see README)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: test venv

venv: $(VENV)/.installed

# The stamp is newer than requirements.txt once everything in it is installed.
$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@

test: venv
	$(PY) -m pytest -q tests

# Sizes of `make reproduce`; override on the command line, e.g. `make reproduce SCALE=0.2`.
SCALE     ?= 0.05
DATASETS  ?=           # empty: V1-V4 and NoScope night (scripts/reproduce.py)
FOLDS     ?= 1 2 3 4
PROFILE   ?= quick
DATA_ROOT ?= data
RESULTS   ?= results

.PHONY: reproduce
reproduce: venv
	$(PY) -m scripts.reproduce --scale $(SCALE) $(if $(strip $(DATASETS)),--datasets $(DATASETS)) --folds $(FOLDS) \
	  --profile $(PROFILE) --data-root $(DATA_ROOT) --out $(RESULTS)
