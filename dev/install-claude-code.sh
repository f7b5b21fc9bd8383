#!/usr/bin/env bash
# dev/install-claude-code.sh - install the real Claude Code CLI (npm @anthropic-ai/claude-code) into
# .dev/claude-code for tests/integration/test_claude_code.py, which runs it offline against a local
# mock of the Messages API. Idempotent: does nothing when that version is already there. Prints the
# binary's path on stdout. CLAUDE_CODE_VERSION (default 2.1.197) picks the version.
set -euo pipefail

VERSION="${CLAUDE_CODE_VERSION:-2.1.197}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.dev/claude-code"
BIN="$DEST/node_modules/.bin/claude"

log() { printf '[install-claude-code] %s\n' "$*" >&2; }

if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "^$VERSION "; then
  echo "$BIN"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { log "npm is not installed (apt-get install npm)"; exit 1; }
mkdir -p "$DEST"
# npm's output goes to the install log (as pip's and apt's do): one line here, the log's tail
# on failure.
LOG_DIR="$ROOT/.dev/logs"
LOG="$LOG_DIR/install.log"
mkdir -p "$LOG_DIR"
log "npm install @anthropic-ai/claude-code@$VERSION into ${DEST#"$ROOT/"} (log: ${LOG#"$ROOT/"})"
if ! npm install --prefix "$DEST" --no-audit --no-fund --loglevel=error \
  "@anthropic-ai/claude-code@$VERSION" >>"$LOG" 2>&1; then
  log "npm install failed; the end of $LOG:"
  tail -n 25 "$LOG" >&2
  exit 1
fi
"$BIN" --version >>"$LOG" 2>&1 || { log "claude does not run after install"; exit 1; }
echo "$BIN"
