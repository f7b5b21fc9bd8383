#!/usr/bin/env bash
# dev/install-claude-code.sh - install the real Claude Code CLI (npm @anthropic-ai/claude-code) into
# .dev/claude-code for tests/integration/test_claude_code.py, which runs it offline against a local
# mock of the Messages API. Idempotent: does nothing when that version is already there. Prints the
# binary's path on stdout. CLAUDE_CODE_VERSION (default 2.1.197) picks the version.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/install-npm.sh" @anthropic-ai/claude-code \
  "${CLAUDE_CODE_VERSION:-2.1.197}" claude-code claude
