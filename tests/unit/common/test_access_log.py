import grpc

from services.common.grpc_server import AccessLog


def test_every_call_that_did_not_end_ok_is_logged_and_one_ok_call_in_n():
    log = AccessLog(every=100)
    oks = [log.wants(grpc.StatusCode.OK) for _ in range(1000)]
    assert sum(oks) == 10 and oks[99] and not oks[0]
    assert all(log.wants(code) for code in grpc.StatusCode if code != grpc.StatusCode.OK)


def test_every_ok_call_is_logged_when_asked():
    log = AccessLog(every=1)
    assert all(log.wants(grpc.StatusCode.OK) for _ in range(50))
    assert AccessLog(every=0).every == 1

