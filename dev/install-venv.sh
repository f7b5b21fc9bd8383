#!/usr/bin/env bash
# dev/install-venv.sh - the project virtualenv every make target runs in.
#
#   dev/install-venv.sh            create .venv if needed, install provider-events[dev] into it
#
# Nothing is ever installed into the interpreter that created the venv: on a stock Debian or
# Ubuntu (system python3 marked EXTERNALLY-MANAGED) this is the only way to install, and with
# pyenv it keeps each clone's `provider-events` pointing at that clone (an editable install in
# the clone's own .venv). Installs run again only when pyproject.toml changed (a hash in the
# stamp file) or the venv's interpreter no longer runs. Their output goes to
# .dev/logs/install.log; one line per step is printed, and the log's tail when a step fails.
#
# Settings (environment): VENV (default .venv), PYTHON (the interpreter to create it with;
# default the first of python3.13 python3.12 python3.11 python3 on PATH that is >= 3.11),
# INSTALLER (uv or pip, default uv: see the Makefile for the measured difference),
# EXTRAS (default dev).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-.venv}
INSTALLER=${INSTALLER:-uv}
EXTRAS=${EXTRAS:-dev}
LOG_DIR=${LOG_DIR:-$ROOT/.dev/logs}
LOG=$LOG_DIR/install.log
STAMP=$VENV/.provider-events-installed
PY=$VENV/bin/python

say() { printf '[install] %s\n' "$*" >&2; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

# run_logged DESCRIPTION CMD...: one line on stderr, the command's output into the log, the
# log's tail when it fails.
run_logged() {
  local what=$1
  shift
  say "$what"
  mkdir -p "$LOG_DIR"
  printf '\n=== %s: %s\n$ %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$what" "$*" >>"$LOG"
  if ! "$@" </dev/null >>"$LOG" 2>&1; then
    printf '[install] failed: %s; the end of %s:\n' "$what" "$LOG" >&2
    tail -n 25 "$LOG" | sed 's/^/  | /' >&2
    exit 1
  fi
}

want_hash() {
  { cat pyproject.toml; printf 'extras=%s installer=%s\n' "$EXTRAS" "$INSTALLER"; } \
    | sha256sum | cut -d' ' -f1
}

venv_works() { [ -x "$PY" ] && "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

# Already installed for this pyproject.toml: nothing to do, nothing printed.
if venv_works && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(want_hash)" ]; then
  exit 0
fi

find_python() {
  local candidate
  if [ -n "${PYTHON:-}" ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
      || die "PYTHON=$PYTHON is not a Python >= 3.11"
    echo "$PYTHON"
    return
  fi
  # A pyenv/asdf shim for a version that is not selected fails when run: try each one.
  for candidate in python3.13 python3.12 python3.11 python3; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
  die "no Python >= 3.11 on PATH: install one (Debian/Ubuntu: apt-get install python3 python3-venv) or set PYTHON=/path/to/python3.11+"
}

if ! venv_works; then
  base=$(find_python)
  version=$("$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  rm -rf "$VENV"
  mkdir -p "$LOG_DIR"
  say "creating $VENV with $(command -v "$base") (Python $version)"
  printf '\n=== %s: creating %s\n$ %s -m venv %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$VENV" \
    "$base" "$VENV" >>"$LOG"
  if ! "$base" -m venv "$VENV" >>"$LOG" 2>&1; then
    rm -rf "$VENV"
    die "'$base -m venv' failed (no venv/ensurepip module): install it (Debian/Ubuntu: apt-get install python3-venv, or python$version-venv) and run make again"
  fi
  venv_works || die "$PY does not run after creating the venv (see $LOG)"
fi
rm -f "$STAMP"

# Never the user's configuration pointing pip elsewhere: user site, a different target.
export PIP_USER=0 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
unset PIP_TARGET PIP_PREFIX PYTHONUSERBASE VIRTUAL_ENV || true
if [ "$INSTALLER" = uv ]; then
  # uv trusts its own copy of the web's roots by default; pip, apt and curl trust the system's
  # store, where a company proxy's CA lives. Trust the same certificates pip does.
  export UV_NATIVE_TLS=${UV_NATIVE_TLS:-1} UV_SYSTEM_CERTS=${UV_SYSTEM_CERTS:-1}
  if ! "$VENV/bin/uv" --version >/dev/null 2>&1; then
    run_logged "installing uv into $VENV (pip)" "$PY" -m pip install uv
  fi
  run_logged "installing provider-events[$EXTRAS] into $VENV (editable, uv; log: ${LOG#"$ROOT"/})" \
    "$VENV/bin/uv" pip install --python "$PY" -e ".[$EXTRAS]"
else
  run_logged "installing provider-events[$EXTRAS] into $VENV (editable, pip; log: ${LOG#"$ROOT"/})" \
    "$PY" -m pip install -e ".[$EXTRAS]"
fi
want_hash >"$STAMP"
say "ready: $VENV/bin/provider-events ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
