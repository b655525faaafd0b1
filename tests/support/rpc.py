"""Reading gRPC refusals in tests: the status, the fields named, the reason."""
import grpc
import pytest
from google.rpc import error_details_pb2

from services.common.grpc_errors import details_of


async def refused(call, code):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return err.value


def fields_of(error):
    names = []
    for detail in details_of(error):
        if isinstance(detail, error_details_pb2.BadRequest):
            names += [v.field for v in detail.field_violations]
        if isinstance(detail, error_details_pb2.PreconditionFailure):
            names += [v.subject for v in detail.violations]
    return names


def reason_of(error):
    return next(d.reason for d in details_of(error) if isinstance(d, error_details_pb2.ErrorInfo))
