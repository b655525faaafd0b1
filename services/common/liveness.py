"""Liveness of the processes that serve no gRPC: a relay or a worker touches its heartbeat
file while its loop turns; a supervisor or a cluster's exec probe checks the file's age.

    python -m services.common.liveness .run/live/pharmacy-relay-0 [--max-age 30]
    python -m services.common.liveness --process pharmacy-relay   # this replica's (EPRX_REPLICA)

exits 0 when the heartbeat is fresh, 1 when it is stale or missing."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from services.common.config import CommonSettings


def heartbeat_path(settings: CommonSettings, process: str) -> Path:
    return settings.run_dir / "live" / f"{process}-{settings.replica}"


class Heartbeat:
    """Touches a file at most once per `every` seconds: cheap enough for every loop round."""

    def __init__(self, path: Path, every: float = 1.0):
        self.path = path
        self._every = every
        self._last = 0.0
        path.parent.mkdir(parents=True, exist_ok=True)

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self.path.touch()
            self._last = now


def age(path: Path) -> float | None:
    """Seconds since the last beat, None when there was none."""
    try:
        return max(0.0, time.time() - os.stat(path).st_mtime)
    except OSError:   # missing, unreadable, a name too long: no heartbeat to trust
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, nargs="?")
    parser.add_argument("--process", help="the heartbeat of this process and replica (EPRX_RUN_DIR, EPRX_REPLICA)")
    parser.add_argument("--max-age", type=float, default=30.0)
    args = parser.parse_args(argv)
    if (args.path is None) == (args.process is None):
        parser.error("give a heartbeat file or --process, one of them")
    if args.process:
        args.path = heartbeat_path(CommonSettings.from_env(), args.process)
    seconds = age(args.path)
    if seconds is None or seconds > args.max_age:
        print(f"{args.path}: {'no heartbeat' if seconds is None else f'last beat {seconds:.0f} s ago'}")
        return 1
    print(f"{args.path}: alive ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
