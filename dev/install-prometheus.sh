#!/usr/bin/env bash
# dev/install-prometheus.sh - install Debian's Prometheus server and promtool for the monitoring
# tests (tests/integration/test_monitoring.py, tests/unit/test_alerts*.py). Idempotent: does
# nothing when both binaries are already on PATH. The Debian package's system service is never
# started here (and is stopped and disabled when the package's scripts started it): the tests run
# their own server on 127.0.0.1 with a temporary config and data directory.
set -euo pipefail

log() { printf '[install-prometheus] %s\n' "$*" >&2; }
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

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  log "already installed: $(prometheus --version 2>&1 | head -n 1)"
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { log "not root and no sudo: run as root"; exit 1; }
  SUDO=sudo
fi

# Keep the package's maintainer scripts from starting the service (policy-rc.d, exit 101 = deny).
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod +x "$POLICY"
  CREATED_POLICY=1
fi
cleanup() { if [ -n "$CREATED_POLICY" ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
run_logged "apt-get update" $SUDO apt-get update -qq
run_logged "apt-get install prometheus" $SUDO apt-get install -y -qq --no-install-recommends prometheus

# Some images start services anyway (no policy-rc.d support without an init system): stop it.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

command -v prometheus >/dev/null 2>&1 || { log "prometheus not on PATH after install"; exit 1; }
command -v promtool >/dev/null 2>&1 || { log "promtool not on PATH after install"; exit 1; }
log "installed: $(prometheus --version 2>&1 | head -n 1)"
