"""Named crash points for reliability tests. A process dies by SIGKILL at the point named
in EPRX_CRASH_AT, exactly as a power cut or OOM kill would stop it there. Inert otherwise."""
from __future__ import annotations

import os
import signal

_ARMED = os.environ.get("EPRX_CRASH_AT", "")


def crash_point(name: str) -> None:
    if _ARMED and _ARMED == name:
        os.kill(os.getpid(), signal.SIGKILL)
