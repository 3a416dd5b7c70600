#!/usr/bin/env bash
# run-watch.sh BUILD_DIR OUT_DIR: the gpu venue's check of the state watcher
# on a machine with a real NVIDIA GPU (tests/gpu/README.md).
#
# READ-ONLY. It never sets power, clocks, ECC, MIG, persistence or compute
# mode, never resets a GPU and never loads a module: the only nvidia-smi
# calls are queries (-L, -q, --query-gpu), gpugate state only reads (NVML
# getters, sysfs attributes), and the workload only computes. The settings
# are read before and after, and the run fails if they differ.
#
#   a) nvidia-smi's view                           -> OUT/nvidia-smi.txt
#   b) gpugate state, 20 s idle                    -> OUT/idle.jsonl
#   c) the same while BUILD/tests/gpu/workload 15 runs -> OUT/load.jsonl
#   d) tests/gpu/check-watch.py: every NVML field in each GPU's first sample,
#      NVML's PCI addresses match nvidia-smi's, no state.unexplained
#   e) OUT/corpus/MODEL-{idle,load}.jsonl, to save under tests/data/watch/
# and, where BUILD/bin/gpugate-watch-bench is, one sampling round through
# NVIDIA's NVML timed (OUT/watch-bench.json). Everything else: OUT/log.txt.
# At most 7 files, for the device tool's 8.
#
# Environment: GG_NVML_LIBRARY (libnvidia-ml.so.1), GG_STATE_SECONDS (20),
# GG_LOAD_SECONDS (15).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR OUT_DIR" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd)
mkdir -p "$2/corpus"
OUT=$(cd "$2" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NVML=${GG_NVML_LIBRARY:-libnvidia-ml.so.1}
SECONDS_STATE=${GG_STATE_SECONDS:-20}
SECONDS_LOAD=${GG_LOAD_SECONDS:-15}
LOG=$OUT/log.txt
: >"$LOG"

die() {
  echo "run-watch: $*" | tee -a "$LOG" >&2
  exit 1
}
log() { echo "run-watch: $*" | tee -a "$LOG"; }

gpugate=$BUILD/bin/gpugate
workload=$BUILD/tests/gpu/workload
[ -x "$gpugate" ] || die "$gpugate missing: build first (make build), or stage a build (tests/gpu/stage.sh)"
[ -x "$workload" ] || die "$workload missing: it is built with nvcc unless configured with -DGPUGATE_CUDA=OFF"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: this script runs on a machine with NVIDIA's driver"
command -v python3 >/dev/null || die "python3 not found: the check (tests/gpu/check-watch.py) needs it"
# A staged build carries the libraries this machine may lack (libfmt,
# toml++): for gpugate's programs alone, not nvidia-smi, python3 or CUDA.
ours() { LD_LIBRARY_PATH=$BUILD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$@"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The settings the watcher judges, as nvidia-smi reads them (queries only).
settings() {
  nvidia-smi --format=csv --query-gpu=pci.bus_id,power.limit,enforced.power.limit,power.default_limit,\
ecc.mode.current,ecc.mode.pending,mig.mode.current,mig.mode.pending,persistence_mode,compute_mode,\
clocks.applications.graphics,clocks.applications.memory
}

# a) read-only information
{
  echo "## nvidia-smi -L"
  nvidia-smi -L
  echo "## settings before"
  settings | tee "$tmp/before.csv"
  echo "## nvidia-smi -q"
  nvidia-smi -q
} >"$OUT/nvidia-smi.txt" 2>>"$LOG" || die "nvidia-smi failed (see $LOG)"
nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader >"$tmp/bus-ids.txt"
model=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1 | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' |
  sed 's/^-*//; s/-*$//')
log "$(nvidia-smi -L | wc -l) GPU(s), model ${model:-unknown}; NVML: $NVML"

state() {
  ours timeout $((SECONDS_STATE + 40)) "$gpugate" state --nvml-library "$NVML" --interval-ms 200 \
    --duration "$SECONDS_STATE" --json
}

# b) idle
log "idle: gpugate state for ${SECONDS_STATE} s"
state >"$OUT/idle.jsonl" 2>"$tmp/idle.err" || { cat "$tmp/idle.err" >>"$LOG"; die "gpugate state (idle) failed"; }
cat "$tmp/idle.err" >>"$LOG"

# c) under load: the workload starts 2 s into the sampling
log "load: gpugate state for ${SECONDS_STATE} s, workload ${SECONDS_LOAD} s from 2 s in"
state >"$OUT/load.jsonl" 2>"$tmp/load.err" &
pid=$!
sleep 2
wl=0
timeout $((SECONDS_LOAD + 60)) "$workload" "$SECONDS_LOAD" >>"$LOG" 2>&1 || wl=$?
st=0
wait "$pid" || st=$?
cat "$tmp/load.err" >>"$LOG"
[ "$wl" -eq 0 ] || die "the workload failed (exit $wl; see $LOG)"
[ "$st" -eq 0 ] || die "gpugate state (load) failed (exit $st; see $LOG)"

{
  echo "## settings after"
  settings | tee "$tmp/after.csv"
} >>"$OUT/nvidia-smi.txt"
if ! cmp -s "$tmp/before.csv" "$tmp/after.csv"; then
  diff "$tmp/before.csv" "$tmp/after.csv" >>"$LOG" || true
  die "a GPU setting changed during the run (see $LOG): nothing here sets one, so something else on this machine did"
fi

# The cost of one sampling round through NVIDIA's NVML (not a pass/fail check).
bench=$BUILD/bin/gpugate-watch-bench
if [ -x "$bench" ]; then
  log "timing one sampling round through $NVML"
  GG_NVML_LIBRARY=$NVML ours "$bench" --benchmark_filter='BM_SampleNvmlLibrary|BM_IoctlDevNull|BM_SampleSysfs' \
    --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_out="$OUT/watch-bench.json" --benchmark_out_format=json >>"$LOG" 2>&1 ||
    log "the benchmark failed (see above); the checks go on"
else
  log "no $bench: the sampling round is not timed"
fi

# d) the checks
python3 "$HERE/check-watch.py" "$OUT/idle.jsonl" "$OUT/load.jsonl" "$tmp/bus-ids.txt" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}

# e) the corpus, to copy under tests/data/watch/ (tests/unit/watch_nvml_test.cpp reads it)
cp "$OUT/idle.jsonl" "$OUT/corpus/${model:-gpu}-idle.jsonl"
cp "$OUT/load.jsonl" "$OUT/corpus/${model:-gpu}-load.jsonl"
[ "$rc" -eq 0 ] || die "the checks failed (above)"
log "pass: every NVML field sampled, addresses match, nothing unexplained; read-only throughout"
