#!/usr/bin/env bash
# dev/install-ccusage.sh - install ccusage (npm, JavaScript) into .dev/npm for the transcript
# import benchmark (benchmarks/bench_import.py compares `import claude-code` with
# `ccusage daily --json --offline` on the same folder). Idempotent: does nothing when that
# version is already there. Prints the binary's path on stdout. CCUSAGE_VERSION (default 18,
# the newest major that runs here: 20.x needs a native package the registry does not serve).
set -euo pipefail

VERSION="${CCUSAGE_VERSION:-18}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.dev/npm"
BIN="$DEST/node_modules/.bin/ccusage"
STAMP="$DEST/.ccusage-version"

log() { printf '[install-ccusage] %s\n' "$*" >&2; }

if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$VERSION" ]; then
  echo "$BIN"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { log "npm is not installed (apt-get install npm)"; exit 1; }
mkdir -p "$DEST"
LOG_DIR="$ROOT/.dev/logs"
LOG="$LOG_DIR/install.log"
mkdir -p "$LOG_DIR"
log "npm install ccusage@$VERSION into ${DEST#"$ROOT/"} (log: ${LOG#"$ROOT/"})"
if ! npm install --prefix "$DEST" --no-audit --no-fund --loglevel=error \
  "ccusage@$VERSION" >>"$LOG" 2>&1; then
  log "npm install failed; the end of $LOG:"
  tail -n 25 "$LOG" >&2
  exit 1
fi
"$BIN" --version >>"$LOG" 2>&1 || { log "ccusage does not run after install"; exit 1; }
echo "$VERSION" >"$STAMP"
echo "$BIN"
