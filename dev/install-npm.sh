#!/usr/bin/env bash
# dev/install-npm.sh PACKAGE VERSION DIR BIN - install an npm package into .dev/DIR for the tests
# and benchmarks that run it (dev/install-claude-code.sh, dev/install-ccusage.sh). Idempotent:
# does nothing when that version is already there (a stamp next to node_modules). npm's output
# goes to .dev/logs/install.log (as pip's and apt's do): one line here, the log's tail on
# failure. Prints the binary's path on stdout.
set -euo pipefail

[ $# -eq 4 ] || { echo "usage: $0 PACKAGE VERSION DIR BIN" >&2; exit 2; }
PACKAGE="$1" VERSION="$2" DIR="$3" NAME="$4"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.dev/$DIR"
BIN="$DEST/node_modules/.bin/$NAME"
STAMP="$DEST/.$NAME-version"

log() { printf '[install-%s] %s\n' "$NAME" "$*" >&2; }

if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$VERSION" ]; then
  echo "$BIN"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { log "npm is not installed (apt-get install npm)"; exit 1; }
mkdir -p "$DEST" "$ROOT/.dev/logs"
LOG="$ROOT/.dev/logs/install.log"
log "npm install $PACKAGE@$VERSION into ${DEST#"$ROOT/"} (log: ${LOG#"$ROOT/"})"
if ! npm install --prefix "$DEST" --no-audit --no-fund --loglevel=error \
  "$PACKAGE@$VERSION" >>"$LOG" 2>&1; then
  log "npm install failed; the end of $LOG:"
  tail -n 25 "$LOG" >&2
  exit 1
fi
"$BIN" --version >>"$LOG" 2>&1 || { log "$NAME does not run after install"; exit 1; }
echo "$VERSION" >"$STAMP"
echo "$BIN"
