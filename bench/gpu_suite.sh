#!/usr/bin/env bash
# Everything a session with an NVIDIA GPU should run, in as few commands as a short GPU lease
# allows. It builds fastllm (CPU and CUDA modules) against the machine's own python3 and torch
# (no network needed: --no-deps, no build isolation), then runs every test marked `cuda`, then the
# GPU halves of the kernel benchmarks. Each stage writes a log under $LOG_DIR; the exit status is
# the first failing stage's.
#
#     bash bench/gpu_suite.sh [env|build|test|bench|tune|all] ...     (default: all = env build test bench)
#
# `tune` sweeps the Triton attention tile sizes (bench/tune_attention.py); its compiles can run
# ahead in parallel, even during the build: `python3 bench/tune_attention.py --compile-only
# --shard I --shards N`.
#
# Environment: PYTHON (default python3), LOG_DIR (default build/gpu-suite), FASTLLM_CUDA_ARCHS
# (default: the visible card's compute capability), TEST_PATHS (default: the test files that
# hold `cuda` tests, so a package missing on the GPU machine cannot stop collection),
# PYTEST_ARGS (extra pytest arguments, e.g. -n 8), BENCH_ARGS (extra arguments for each
# benchmark, e.g. --quick), STAGE_LIMIT (seconds each Python command of a stage may run; a
# lease is short).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
LOG_DIR=${LOG_DIR:-build/gpu-suite}
mkdir -p "$LOG_DIR"
export PYTHONUNBUFFERED=1

stage_env() {
  nvidia-smi || return 1
  "$PY" - <<'EOF'
import torch
print("python torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0),
      "capability", torch.cuda.get_device_capability(0))
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: not installed")
EOF
}

limited() {
  if [ -n "${STAGE_LIMIT:-}" ]; then
    timeout --kill-after=10 "$STAGE_LIMIT" "$@"
  else
    "$@"
  fi
}

card_arch() {
  "$PY" -c "import torch; major, minor = torch.cuda.get_device_capability(0); print(f'{major}{minor}')"
}

stage_build() {
  local arch=${FASTLLM_CUDA_ARCHS:-$(card_arch)}
  echo "building fastllm with its CUDA module for sm_$arch"
  FASTLLM_CUDA=on FASTLLM_CUDA_ARCHS=$arch CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip install --no-build-isolation --no-deps --no-index -e . || return 1
  "$PY" -c "from fastllm import _ext; _ext.cuda(); print('fastllm._C_cuda loads')"
}

stage_test() {
  local paths=${TEST_PATHS:-$(grep -rlE --include='test_*.py' 'pytest\.mark\.cuda' tests | sort)}
  # shellcheck disable=SC2086  # PYTEST_ARGS and paths are lists of words
  limited "$PY" -m pytest -m cuda -p no:cacheprovider -q -ra ${PYTEST_ARGS:-} $paths
}

stage_bench() {
  local status=0 script
  for script in bench/bench_rope.py bench/bench_attention.py; do
    echo "== $script"
    # shellcheck disable=SC2086
    limited "$PY" "$script" ${BENCH_ARGS:-} || status=1
  done
  return $status
}

stage_tune() {
  limited "$PY" bench/tune_attention.py
}

run_stage() {
  local name=$1 log="$LOG_DIR/$1.log" start=$SECONDS
  echo "== gpu suite: $name (log: $log)"
  "stage_$name" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  echo "== gpu suite: $name exited $status after $((SECONDS - start)) s" | tee -a "$log"
  return "$status"
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] && [ "${stages[0]}" != all ] || stages=(env build test bench)
failed=0
for stage in "${stages[@]}"; do
  case $stage in
    env|build|test|bench|tune)
      run_stage "$stage"
      status=$?
      [ "$failed" -ne 0 ] || failed=$status ;;
    *) echo "gpu_suite.sh: unknown stage '$stage' (env, build, test, bench, tune, all)" >&2; exit 2 ;;
  esac
done
exit $failed
