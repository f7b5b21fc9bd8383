"""``provider-events hook claude`` without argparse: what Claude Code runs on every prompt.

Same behaviour as ``cli/_hook.py``'s ``claude`` action with no flag (nothing on stdout, exit 0
always, problems in ``hook.log``); ``cli.main`` sends exactly ``hook claude`` here.
"""

from __future__ import annotations

import os

__all__ = ["claude"]


def claude() -> int:
    try:
        # Nothing may reach stdout: for UserPromptSubmit it becomes part of the prompt.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        from provider_events.integrations._hook_lean import run

        run()  # the common calls in the standard library; the rest through the full hook
    except BaseException:
        pass
    return 0
