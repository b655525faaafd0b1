"""The parts of a combined process (services/common/combined.py): a relay that fails stops the
whole process, gracefully, with exit code 1, instead of leaving a server and a worker running
whose events pile up in the outbox."""
import subprocess
import sys
import textwrap

from tests.support.prescribing_fixtures import ROOT

PROCESS = textwrap.dedent('''
    import mode
    from services.common import combined

    class FailingRelay:
        def run(self, stop):
            raise RuntimeError("a bug in the relay")

    class Server(mode.Service):
        async def on_stop(self):
            print("server stopped gracefully", flush=True)

    combined.run(mode.Worker(combined.RelayPart(FailingRelay()), Server(), loglevel="warning", quiet=True))
''')


def test_a_failed_relay_stops_the_process_gracefully_with_exit_code_1():
    done = subprocess.run([sys.executable, "-c", PROCESS], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    said = done.stdout + done.stderr   # mode sends what the parts print to its log
    assert done.returncode == 1, said
    assert "server stopped gracefully" in said and "outbox.relay_failed" in said and "a bug in the relay" in said


def test_a_relay_stopped_on_request_stops_nothing_else():
    import asyncio
    import threading
    from services.common.combined import RelayPart
    crashed, stopped = [], threading.Event()

    class Relay:
        def run(self, stop):
            stop.wait()
            stopped.set()

    async def go():
        part = RelayPart(Relay(), on_crash=crashed.append)
        await part.start()
        await part.stop()
    asyncio.run(go())
    assert stopped.is_set() and not crashed
