"""Progress of a long command: a bar with counts and rate on a terminal, plain periodic lines
(one every `every` seconds, and a last one) when the output is a file or a pipe.

    with Progress("members", total=len(rows)) as progress:
        for row in rows:
            ...
            progress.advance()"""
from __future__ import annotations

import sys
import time
from typing import IO

BAR_WIDTH = 30


class Progress:
    def __init__(self, label: str, total: int | None = None, *, out: IO[str] | None = None,
                 every: float = 5.0, clock=time.monotonic):
        self.label, self.total, self.done = label, total, 0
        self._out = out or sys.stderr
        self._tty = bool(getattr(self._out, "isatty", lambda: False)())
        self._every, self._clock = every, clock
        self._started = self._last = clock()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.finish()

    def rate(self) -> float:
        elapsed = self._clock() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """What is shown: done (of total, with a bar on a terminal), and the rate."""
        rate = f"{self.rate():,.0f}/s"
        if self.total:
            share = min(self.done / self.total, 1.0)
            bar = ("#" * int(share * BAR_WIDTH)).ljust(BAR_WIDTH, ".") if self._tty else ""
            counts = f"{self.done:,}/{self.total:,} ({share:.0%})"
            return f"{self.label}: [{bar}] {counts} {rate}" if bar else f"{self.label}: {counts} {rate}"
        return f"{self.label}: {self.done:,} {rate}"

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self._clock()
        if self._tty and now - self._last >= 0.1:
            self._out.write("\r" + self.line())
            self._out.flush()
            self._last = now
        elif not self._tty and now - self._last >= self._every:
            self._out.write(self.line() + "\n")
            self._out.flush()
            self._last = now

    def finish(self) -> None:
        self._out.write(("\r" if self._tty else "") + self.line() + "\n")
        self._out.flush()
