"""Long commands show progress: a bar on a terminal, plain periodic lines otherwise."""
import io

from services.common.progress import Progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_file_gets_a_line_every_interval_and_a_last_one():
    out, clock = io.StringIO(), Clock()
    with Progress("members", total=40, out=out, every=5, clock=clock) as progress:
        for _ in range(40):
            clock.now += 0.25          # 4 a second: 10 s in all
            progress.advance()
    lines = out.getvalue().splitlines()
    assert lines == ["members: 20/40 (50%) 4/s", "members: 40/40 (100%) 4/s", "members: 40/40 (100%) 4/s"]


def test_a_terminal_gets_a_bar_redrawn_in_place():
    out, clock = Terminal(), Clock()
    progress = Progress("replay rx.prescriptions.v1", total=4, out=out, clock=clock)
    for _ in range(4):
        clock.now += 0.5
        progress.advance()
    progress.finish()
    text = out.getvalue()
    assert "\r" in text and "\n" not in text[:-1]
    assert text.rstrip().endswith("[" + "#" * 30 + "] 4/4 (100%) 2/s")


def test_without_a_total_it_counts():
    out, clock = io.StringIO(), Clock()
    progress = Progress("export", out=out, clock=clock)
    clock.now = 2.0
    progress.advance(10)
    progress.finish()
    assert out.getvalue() == "export: 10 5/s\n"
