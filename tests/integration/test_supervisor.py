"""`make run | tee log`, then Ctrl-C: the reader of the pipe dies with the supervisor's
process group, and the supervisor must still stop every child it started."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_with_the_pipe_reader_gone_still_stops_every_child(tmp_path, python, subprocess_env):
    ports = {"EPRX_KAFKA_PORT": free_port(), "EPRX_KAFKA_CONTROLLER_PORT": free_port(), "EPRX_REDIS_PORT": free_port()}
    env = dict(subprocess_env, EPRX_RUN_DIR=str(tmp_path / "run"), EPRX_KAFKA_HEAP="256m",
               **{k: str(v) for k, v in ports.items()})
    proc = subprocess.Popen([python, "deploy/local/supervise.py", "run", "--infra-only"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, seen = time.monotonic() + 180, []
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode(errors="replace")
            seen.append(line)
            if "logs:" in line or not line:
                break
        assert any("logs:" in line for line in seen), "".join(seen)[-3000:]
        assert all(port_open(p) for p in ports.values() if p != ports["EPRX_KAFKA_CONTROLLER_PORT"])
        proc.stdout.close()                      # `tee` died: every later write is a broken pipe
        os.killpg(proc.pid, signal.SIGINT)       # Ctrl-C reaches the whole foreground group
        assert proc.wait(timeout=90) == 0
        wait_until(lambda: not any(port_open(p) for p in ports.values()), timeout=30, message="every port closed")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            subprocess.run([python, "deploy/local/supervise.py", "down"], cwd=ROOT, env=env, timeout=60)
