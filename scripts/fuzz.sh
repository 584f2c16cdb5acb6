#!/usr/bin/env bash
# Runs keel's fuzz targets (fuzz/, cargo-fuzz + libFuzzer) for a set time each.
#
# Usage: scripts/fuzz.sh [target ...]        default: every target
#   FUZZ_SECONDS=600 scripts/fuzz.sh         seconds per target (default 60)
#   FUZZ_JOBS=2 scripts/fuzz.sh recovery_scan   parallel libFuzzer jobs per target
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Each target
# starts from its committed seed corpus (fuzz/corpus/<target>/, read only) and keeps what it
# learns in fuzz/target/corpus/<target>/ (not committed). A crash stops the run with exit 1;
# the input is in fuzz/artifacts/<target>/. To keep it fixed: copy it to
# fuzz/regressions/<target>/<what-it-broke>, fix the bug, and `cargo test -p keel-server --test
# fuzz_regressions` replays it from then on (the seed corpus too).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
ALL=(request_frames record_batch recovery_scan index_files catalog_files)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi
SECONDS_EACH="${FUZZ_SECONDS:-60}"
JOBS="${FUZZ_JOBS:-1}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs the nightly toolchain and cargo-fuzz: rustup toolchain install nightly;" \
       "cargo install cargo-fuzz --locked" >&2
  exit 2
fi

for t in "${TARGETS[@]}"; do
  mkdir -p "target/corpus/$t"
  echo "==== fuzz $t for ${SECONDS_EACH}s"
  cargo +nightly fuzz run -O "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 -jobs="$JOBS" -workers="$JOBS" \
    -print_final_stats=1
done
echo "==== fuzz.sh: no crash in ${TARGETS[*]} (${SECONDS_EACH}s each)"
