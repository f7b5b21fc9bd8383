#!/usr/bin/env bash
# dev/install-chromium.sh - install Debian's headless-capable Chromium for the HTML report tests
# (tests/integration/test_report*.py) and fonts so screenshots show real glyphs. Idempotent: does
# nothing when `chromium` is already on PATH. Prints the binary's path and version on stderr.
set -euo pipefail

log() { printf '[install-chromium] %s\n' "$*" >&2; }

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
log "apt-get install chromium"
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-liberation >&2
command -v chromium >/dev/null 2>&1 || { log "chromium is still not on PATH"; exit 1; }
log "installed: $(command -v chromium) ($(chromium --version 2>/dev/null || echo unknown))"
