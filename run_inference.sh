#!/usr/bin/env bash
# Inference throughput sweep of the paper (section 5): for every model, batch size and trial,
# the Original CNN, its FoldedCNNs, the narrow CNN of each f (the original at width x 1/sqrt(f))
# and (game models) the EfficientNet-style baseline.
#
#   ./run_inference.sh results.csv 2> stderr.txt
#   MODELS="lol-gold1 night" TRIALS=3 NUM_ITERATION=100 ./run_inference.sh results.csv
#
# Prints `Model,Trial,Batch Size,Mode,Fold,Throughput,FLOPs/sec,TputNorm,FLOPNorm,Variant,Backend` and one
# row per run, and appends the rows to OUTFILE. Rows already in OUTFILE are kept and their
# runs skipped, so rerunning an interrupted sweep finishes it. OUTFILE.settings.json keeps the
# settings that make its rows comparable (backend, precision, device, align, channels-last, GPU,
# compile mode, TensorRT version): a rerun with others stops with an error; give it a new
# file. Edit the settings below, or override any of them from the environment. The work is
# done by `infer.py sweep`.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 OUTFILE   (settings: see the top of $0)" >&2
  exit 2
fi
case "$1" in /*) OUTFILE="$1" ;; *) OUTFILE="$PWD/$1" ;; esac  # before the cd below
cd "$(dirname "$0")"

# PYTHON, else the image's own Python in the NGC container (SYSTEM_PYTHON=1, which has its torch
# and TensorRT; a host .venv mounted into the container would hide them), else ./.venv's.
if [ -z "${PYTHON:-}" ]; then
  if [ "${SYSTEM_PYTHON:-0}" != 1 ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
MODELS="${MODELS:-$("$PYTHON" infer.py --list game noscope)}"  # names or ids (infer.py --list)
FOLDS="${FOLDS:-1 2 3 4}"          # f=1 is the Original, always measured (the norms need it);
                                   # f=3 at batch 1024 runs 341 inputs = 1023 images
BATCH_SIZES="${BATCH_SIZES:-1024}"
TRIALS="${TRIALS:-10}"
EFFICIENTNET="${EFFICIENTNET:-1}"  # 1: also the compound-scaled baseline of game models
NARROW="${NARROW:-1}"              # 1: also the narrow CNN of each f > 1 (Mode Narrow)
BACKEND="${BACKEND:-}"             # tensorrt | cudagraph | onnxruntime | openvino | compile | eager
                                   # (empty: the fastest here: cudagraph on a GPU; on a CPU openvino
                                   # where it has native bf16 (AMX, AVX512_BF16), else onnxruntime)
PRECISION="${PRECISION:-}"         # fp16 | bf16 | fp32 (empty: fp16 on a GPU; bf16 for openvino on a
                                   # CPU with native bf16; else fp32)
DEVICE="${DEVICE:-}"               # cuda | cuda:N | cpu (empty: cuda if there is one)
NUM_WARMUP="${NUM_WARMUP:-}"       # per trial (empty: 100 on a GPU, 2 on a CPU)
NUM_ITERATION="${NUM_ITERATION:-}" # timed per trial (empty: 10000 on a GPU, 10 on a CPU)
ALIGN="${ALIGN:-1}"                # round folded widths up to a multiple of this
CHANNELS_LAST="${CHANNELS_LAST:-0}" # 1: channels-last tensors for eager/compile
THREADS="${THREADS:-}"             # CPU threads of PyTorch and onnxruntime (empty: PyTorch's choice)

# shellcheck disable=SC2086  # MODELS, FOLDS and BATCH_SIZES are space-separated lists
exec "$PYTHON" infer.py sweep "$OUTFILE" --models $MODELS --folds $FOLDS --batch-sizes $BATCH_SIZES \
  --trials "$TRIALS" --align "$ALIGN" \
  ${BACKEND:+--backend "$BACKEND"} ${PRECISION:+--precision "$PRECISION"} ${DEVICE:+--device "$DEVICE"} \
  ${NUM_WARMUP:+--num-warmup "$NUM_WARMUP"} ${NUM_ITERATION:+--num-iteration "$NUM_ITERATION"} \
  ${THREADS:+--threads "$THREADS"} \
  $([ "$EFFICIENTNET" = 1 ] || echo --no-efficientnet) $([ "$NARROW" = 1 ] || echo --no-narrow) \
  $([ "$CHANNELS_LAST" = 1 ] && echo --channels-last)
