#!/usr/bin/env bash
# dev/install-ccusage.sh - install ccusage (npm, JavaScript) into .dev/npm for the transcript
# import benchmark (benchmarks/bench_import.py compares `import claude-code` with
# `ccusage daily --json --offline` on the same folder). Idempotent. Prints the binary's path on
# stdout. CCUSAGE_VERSION (default 18, the newest major that runs here: 20.x needs a native
# package the registry does not serve).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/install-npm.sh" ccusage "${CCUSAGE_VERSION:-18}" npm ccusage
