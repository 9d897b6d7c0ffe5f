"""Whether a process still runs: how dsocr tells a stale temporary file or build folder from one in use."""

from __future__ import annotations

import os


def process_exists(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user counts: it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:  # not a process id at all
        return False
    return True
