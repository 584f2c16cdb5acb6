#!/usr/bin/env bash
# The one test command for keel. Stages, in order:
#   deps     scripts/test-deps.sh (kcat, node, the Python venv, KafkaJS)
#   fmt      cargo fmt --all --check
#   clippy   cargo clippy --workspace --all-targets -- -D warnings
#   test     cargo test --workspace --release --all-targets (benchmarks once each), and doctests
#   backends the engine and broker tests again on each other I/O backend (KEEL_IO_BACKEND=uring,
#            once plain and once with every uring option on, and =pwrite); the default run
#            above is the glommio backend
#   build    cargo build --release -p keel-server   (target/release/keel)
#   clients  pytest tests/clients: real Kafka clients against the real keel process
#
# Usage: scripts/test.sh [stage ...]   (default: all stages, in the order above)
#   PYTEST_ARGS="-k codec -x" scripts/test.sh clients    narrows the client suite
#   KEEL_BIN=/path/to/keel                               tests another binary
#
# The Rust tests run in release mode: they share their compiled dependencies with the
# release build of the broker that the client tests need, instead of building every
# dependency twice, and the engine's I/O-heavy tests run faster optimised. Any failing
# stage stops the run with a non-zero exit and names itself; timings print at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

ALL_STAGES=(deps fmt clippy test backends build clients)
if [ $# -gt 0 ]; then STAGES=("$@"); else STAGES=("${ALL_STAGES[@]}"); fi
for s in "${STAGES[@]}"; do
  case " ${ALL_STAGES[*]} " in *" $s "*) ;; *) echo "test.sh: unknown stage '$s' (have: ${ALL_STAGES[*]})" >&2; exit 2 ;; esac
done

TIMINGS=()
CURRENT=""
STAGE_START=0
RUN_START="$(date +%s.%N)"

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

summary() {
  echo
  echo "==== test.sh timings"
  for t in "${TIMINGS[@]}"; do echo "  $t"; done
  echo "  total    $(elapsed "$RUN_START")s"
}

on_exit() {
  local code=$?
  if [ $code -ne 0 ] && [ -n "$CURRENT" ]; then
    TIMINGS+=("$(printf '%-8s %ss  FAILED' "$CURRENT" "$(elapsed "$STAGE_START")")")
    summary
    echo
    echo "==== test.sh: FAILED at stage '$CURRENT' (exit $code)" >&2
  fi
  exit $code
}
trap on_exit EXIT

stage() {
  CURRENT="$1"
  STAGE_START="$(date +%s.%N)"
  echo
  echo "==== stage $CURRENT"
}

stage_done() {
  TIMINGS+=("$(printf '%-8s %ss' "$CURRENT" "$(elapsed "$STAGE_START")")")
  CURRENT=""
}

run_clients() {
  local keel_bin="${KEEL_BIN:-$ROOT/target/release/keel}"
  if [ ! -x "$keel_bin" ]; then
    echo "no broker binary at $keel_bin (run the build stage, or set KEEL_BIN)" >&2
    return 1
  fi
  export KEEL_BIN="$keel_bin"
  local code=0
  # shellcheck disable=SC2086  # PYTEST_ARGS is a list of words on purpose
  (cd tests/clients && .venv/bin/python -m pytest ${PYTEST_ARGS:-}) || code=$?
  if [ $code -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    return 1
  fi
  return $code
}

# The tests that touch real files or a real broker, once per other backend. The whole
# workspace's test targets, not just the engine's and the server's: a subset of packages
# unifies features differently and would rebuild every binary. (The simulated-storage tests
# in the same binaries run again too; they are fast and backend-independent.)
run_backends() {
  local b
  local -a settings
  for b in uring uring-all pwrite; do
    echo "--- backend $b"
    case "$b" in
      uring-all) settings=(KEEL_IO_BACKEND=uring KEEL_URING_SQPOLL=true KEEL_URING_FIXED_BUFFERS=true
                           KEEL_URING_FIXED_FILES=true KEEL_URING_LINKED_SYNC=true) ;;
      *) settings=(KEEL_IO_BACKEND="$b") ;;
    esac
    env "${settings[@]}" cargo test --workspace --release --locked --tests
  done
}

for s in "${STAGES[@]}"; do
  stage "$s"
  case "$s" in
    deps) bash scripts/test-deps.sh ;;
    fmt) cargo fmt --all --check ;;
    clippy) cargo clippy --workspace --all-targets --locked -- -D warnings ;;
    # --all-targets runs every criterion benchmark once too (so they cannot rot); it skips
    # doctests, which the second command runs.
    # Two statements, not `a && b`: under `set -e` a failure on the left of `&&` would not
    # stop the script.
    test)
      cargo test --workspace --release --locked --all-targets
      cargo test --workspace --release --locked --doc
      ;;
    backends) run_backends ;;
    build) cargo build --release --locked -p keel-server ;;
    clients) run_clients ;;
  esac
  stage_done
done

summary
echo
echo "==== test.sh: all stages passed (${STAGES[*]})"
