#!/usr/bin/env bash
# dev/install-chromium.sh - install Debian's headless-capable Chromium for the HTML report tests
# (tests/integration/test_report*.py) and fonts so screenshots show real glyphs. Idempotent: does
# nothing when `chromium` is already on PATH. Prints the binary's path and version on stderr.
set -euo pipefail

log() { printf '[install-chromium] %s\n' "$*" >&2; }
# apt's output goes to .dev/logs/install.log; one line per step here, the log's tail on failure.
LOG_DIR=${LOG_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.dev/logs}
LOG=$LOG_DIR/install.log
run_logged() { # DESCRIPTION CMD...
  local what=$1
  shift
  log "$what (log: $LOG)"
  mkdir -p "$LOG_DIR"
  printf '\n=== %s: %s\n$ %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$what" "$*" >>"$LOG"
  if ! "$@" </dev/null >>"$LOG" 2>&1; then
    log "failed: $what; the end of $LOG:"
    tail -n 25 "$LOG" | sed 's/^/  | /' >&2
    exit 1
  fi
}

if command -v chromium >/dev/null 2>&1; then
  log "already installed: $(command -v chromium) ($(chromium --version 2>/dev/null || echo unknown))"
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { log "not root and no sudo: run as root"; exit 1; }
  SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
run_logged "apt-get update" $SUDO apt-get update -qq
run_logged "apt-get install chromium" \
  $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-liberation
command -v chromium >/dev/null 2>&1 || { log "chromium is still not on PATH"; exit 1; }
log "installed: $(command -v chromium) ($(chromium --version 2>/dev/null || echo unknown))"
