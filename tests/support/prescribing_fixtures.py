"""A prescribing server in the test process (real Redis, real channel, a clock the test
controls) with the relay and the projection worker running as real processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
from eprescription.prescribing.v1 import prescribing_pb2_grpc
import pytest

from services.common import signatures
from services.common.auth import Authenticator, load_tokens, write_credentials
from services.common.grpc_server import create_server, mark_serving
from services.prescribing.adapters import reference_data
from services.prescribing.adapters.grpc_api import PrescribingServicer, binding
from services.prescribing.bootstrap import bootstrap
from services.prescribing.config import Settings
from tests.support import admin_redis_async

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += timedelta(**kwargs)


def prescribing_settings() -> Settings:
    settings = Settings.from_env()
    registered = reference_data.load(settings.reference_dir).prescribers.values()
    signatures.ensure_keys(settings.keys_dir, [p.key_id for p in registered])
    return settings


GUARD = Path(__file__).with_name("die_with_parent.py")


def start_process(args, env=None):
    """Output goes to a file, not a pipe: a pipe nobody reads fills up and stalls the process."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "build" / "gen")])
    output = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, str(GUARD), *args], env=full_env, cwd=ROOT, stdout=output,
                            stderr=subprocess.STDOUT)
    proc.output_file = output
    return proc


def output_of(proc) -> str:
    proc.output_file.seek(0)
    return proc.output_file.read().decode(errors="replace")


def stop_process(proc, timeout=60):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return output_of(proc)


@pytest.fixture(scope="module")
def pipeline():
    """The prescribing relay and projection worker, for the tests of this module."""
    relay = start_process(["-m", "services.common.outbox_relay", "prescribing"])
    worker = start_process(["-m", "services.prescribing.worker", "worker", "-l", "warn", "--without-web"])
    yield
    died = {name: proc for name, proc in (("relay", relay), ("worker", worker)) if proc.poll() is not None}
    outputs = {name: stop_process(proc) for name, proc in (("relay", relay), ("worker", worker))}
    assert not died, f"{', '.join(died)} died during the tests: {outputs}"[-4000:]


@asynccontextmanager
async def in_process_server(service_binding, credentials_dir):
    """A service's server in the test process on a free port, with the given credentials;
    yields a channel to it."""
    server, port, health = await create_server("127.0.0.1:0", [service_binding],
                                               Authenticator.from_file(credentials_dir / "credentials.json"))
    await server.start()
    await mark_serving(health, [service_binding.name])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(0)


@pytest.fixture
async def prescribing(tmp_path):
    """(stub, tokens, clock, handlers) over a real channel."""
    settings = prescribing_settings()
    clock = Clock(datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc))  # 09:00 in Vietnam
    client = admin_redis_async(settings.common.redis_url_for("admin"), protocol=3)
    handlers, close = bootstrap(settings, clock=clock, redis_client=client)
    write_credentials(tmp_path)
    async with in_process_server(binding(PrescribingServicer(handlers)), tmp_path) as channel:
        yield prescribing_pb2_grpc.PrescribingServiceStub(channel), load_tokens(tmp_path / "tokens.json"), clock, handlers
    await close()


def auth(tokens, label):
    return (("authorization", f"Bearer {tokens[label]}"),)


