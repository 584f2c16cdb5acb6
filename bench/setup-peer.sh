#!/usr/bin/env bash
# Installs the peer broker that keel-bench measures keel against: Tansu 0.6 (Rust,
# Kafka-compatible, Apache-2.0) from crates.io, into target/peer/ of this repository, so nothing
# global changes. It is a long build (about 16 minutes on 2 cores, 1.7 GB peak memory), so it
# runs niced with one build job; its build directory is outside the repository
# (PEER_BUILD_DIR, default a fresh temporary folder) and is removed afterwards.
#
#   bench/setup-peer.sh            # installs target/peer/bin/tansu unless it is there already
#   PEER_BUILD_DIR=dir bench/setup-peer.sh
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
root="$repo/target/peer"
version=0.6.0

if [[ -x "$root/bin/tansu" ]] && "$root/bin/tansu" --version 2>/dev/null | grep -q "$version"; then
    echo "tansu $version already installed in $root/bin"
    exit 0
fi

build_dir=${PEER_BUILD_DIR:-$(mktemp -d)}
cleanup() { [[ -n "${PEER_BUILD_DIR:-}" ]] || rm -rf "$build_dir"; }
trap cleanup EXIT

echo "building tansu $version in $build_dir, installing into $root (about 16 minutes)"
CARGO_TARGET_DIR="$build_dir" CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} \
    nice -n 10 cargo install "tansu@$version" --locked --features dynostore,libsql \
    --root "$root"
"$root/bin/tansu" --version || true
