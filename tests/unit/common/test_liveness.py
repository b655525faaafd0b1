import os
import time

from services.common import liveness
from services.common.config import CommonSettings


def test_a_heartbeat_is_fresh_after_a_beat_and_stale_when_it_stops(tmp_path, capsys):
    path = liveness.heartbeat_path(CommonSettings.from_env({"EPRX_RUN_DIR": str(tmp_path), "EPRX_REPLICA": "b"}),
                                   "pharmacy-relay")
    assert path == tmp_path / "live" / "pharmacy-relay-b"
    assert liveness.main([str(path)]) == 1 and "no heartbeat" in capsys.readouterr().out
    liveness.Heartbeat(path).beat()
    assert liveness.main([str(path), "--max-age", "5"]) == 0
    old = time.time() - 60
    os.utime(path, (old, old))
    assert liveness.main([str(path), "--max-age", "30"]) == 1 and "60 s ago" in capsys.readouterr().out.splitlines()[-1]


def test_beats_closer_than_the_interval_touch_the_file_once(tmp_path):
    heartbeat = liveness.Heartbeat(tmp_path / "live" / "x", every=60)
    heartbeat.beat()
    old = time.time() - 100
    os.utime(heartbeat.path, (old, old))
    heartbeat.beat()   # within the minute: no write
    assert liveness.age(heartbeat.path) > 90


def test_a_probe_names_the_process_and_the_replica_comes_from_the_environment(tmp_path, monkeypatch):
    # A pod's probe cannot expand its own name into a path: --process finds this replica's file.
    monkeypatch.setenv("EPRX_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("EPRX_REPLICA", "insurance-worker-1")
    assert liveness.main(["--process", "insurance-worker"]) == 1
    liveness.Heartbeat(tmp_path / "live" / "insurance-worker-insurance-worker-1").beat()
    assert liveness.main(["--process", "insurance-worker"]) == 0
    monkeypatch.setenv("EPRX_REPLICA", "insurance-worker-0")   # another replica's beat is not this one's
    assert liveness.main(["--process", "insurance-worker"]) == 1


def test_the_image_healthcheck_asks_the_heartbeat_of_the_process_it_runs(tmp_path, monkeypatch):
    from services.common import healthcheck
    monkeypatch.setenv("EPRX_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("EPRX_REPLICA", "0")
    monkeypatch.setenv("EPRX_HEALTH_PROCESS", "pharmacy-relay")
    assert healthcheck.main() == 1
    liveness.Heartbeat(tmp_path / "live" / "pharmacy-relay-0").beat()
    assert healthcheck.main() == 0
    monkeypatch.setenv("EPRX_HEALTH_PORT", "1")   # a gRPC service: its health port, nothing answers there
    assert healthcheck.main() == 1
