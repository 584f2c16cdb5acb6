#!/usr/bin/env bash
# Installs what the real-client tests need, on Debian 12 with the Rust toolchain:
#   kcat, Node.js + npm, Python 3 with venv  (Debian packages)
#   tests/clients/.venv                      (tests/clients/requirements.txt, pinned)
#   tests/clients/node/node_modules          (package-lock.json, via npm ci)
# Idempotent and quick when everything is in place: apt runs only when a tool is
# missing, pip only when requirements.txt changed, npm only when the lock file changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLIENTS="$ROOT/tests/clients"
VENV="$CLIENTS/.venv"
NODE_DIR="$CLIENTS/node"

log() { printf 'test-deps: %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: only when a tool is missing (apt-get update alone takes seconds).
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ! command -v python3 >/dev/null 2>&1; then
  missing+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python venv, reinstalled when requirements.txt changes (its hash is kept in the venv).
req_hash="$(sha256sum "$CLIENTS/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$req_hash" ]; then
  log "python venv $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$CLIENTS/requirements.txt"
  echo "$req_hash" >"$VENV/.requirements.sha256"
fi

# KafkaJS and its codecs, reinstalled when the lock file changes.
lock_hash="$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)"
if [ ! -d "$NODE_DIR/node_modules" ] || [ "$(cat "$NODE_DIR/node_modules/.lock.sha256" 2>/dev/null)" != "$lock_hash" ]; then
  log "npm ci in $NODE_DIR"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_hash" >"$NODE_DIR/node_modules/.lock.sha256"
fi

log "ok: $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*/kcat \1/p'), node $(node --version)," \
  "$("$VENV/bin/python" --version)"
