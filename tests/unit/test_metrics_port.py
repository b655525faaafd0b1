"""A process whose metrics port is taken still runs: serving metrics is not worth an outage."""
import socket

from services.common import metrics


def test_a_taken_port_is_reported_not_fatal():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert metrics.serve(taken.getsockname()[1]) is False
    assert metrics.serve(0) is False
