"""Named crash points for reliability tests. A process dies by SIGKILL at the point named
by EPRX_CRASH_AT (CommonSettings.crash_at), exactly as a power cut or OOM kill would stop it
there. Inert unless the process armed it with its settings."""
from __future__ import annotations

import os
import signal


class CrashPoints:
    def __init__(self, armed: str = ""):
        self._armed = armed

    def __call__(self, name: str) -> None:
        if self._armed and self._armed == name:
            os.kill(os.getpid(), signal.SIGKILL)
