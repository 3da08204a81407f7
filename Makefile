# make test       create .venv if needed, install requirements.txt, run the test suite
# make reproduce  the paper end to end at laptop scale, report in results/ (see README)
# make gpu-check  every CUDA path end to end, on a machine with a GPU (scripts/gpu_check.py)
# make figure7    the paper's figure 7 measured on a GPU, with its roofline (scripts/figure7.py)
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

# The GPU of gpu-check and figure7, e.g. `make figure7 GPU_DEVICE=cuda:1`.
GPU_DEVICE ?= cuda

gpu-check: venv
	$(PY) -m scripts.gpu_check --device $(GPU_DEVICE)

# make figure7: every model at f = 1..4, the narrow CNNs of f and the EfficientNet baseline, batch 1024, fp16,
# cudagraph (under 10 minutes on an H100, estimated before it starts), then the roofline
# with the GPU's measured peaks, then the plot. ENGINES adds backends: "compile" (Inductor's
# default mode), "tensorrt" (its engines and timing cache persist in engines/).
FIGURE7 ?= results/figure7
ENGINES ?=

.PHONY: figure7
figure7: venv
	$(PY) -m scripts.figure7 --out $(FIGURE7) --device $(GPU_DEVICE) $(if $(strip $(ENGINES)),--engines $(ENGINES))
	$(PY) -m scripts.roofline --results $(FIGURE7)/results*.csv --out $(FIGURE7) --device $(GPU_DEVICE) --precision fp16
	$(PY) -m scripts.plot_results $(FIGURE7)/results.csv --outdir $(FIGURE7)

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
