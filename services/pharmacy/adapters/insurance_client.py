"""The pharmacy service's client of InsuranceService: a quote with a deadline."""
from __future__ import annotations

from datetime import date

import grpc
from eprescription.insurance.v1 import insurance_pb2, insurance_pb2_grpc

from services.common import dates
from services.pharmacy.domain.rules import InsuranceUnavailable, InvalidRequest, Refused


class InsuranceClient:
    def __init__(self, address: str, token: str, timeout_seconds: float):
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = insurance_pb2_grpc.InsuranceServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout_seconds

    async def quote(self, card: str, day: date, facility: str, lines: list[tuple[int, str, int, int]],
                    correlation_id: str) -> insurance_pb2.QuoteCoverageResponse:
        request = insurance_pb2.QuoteCoverageRequest(
            card_identifier=card, date=dates.to_proto(day), facility_code=facility,
            lines=[insurance_pb2.QuoteLine(line_number=n, drug_code=d, quantity=q, unit_price_vnd=p)
                   for n, d, q, p in lines])
        try:
            return await self._stub.QuoteCoverage(
                request, timeout=self._timeout,
                metadata=self._metadata + (("x-correlation-id", correlation_id),))
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                raise Refused("BHYT_NOT_ELIGIBLE", f"insurance: {error.details()}", "bhyt_card") from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidRequest("bhyt_card", "BHYT_CARD_INVALID", f"insurance: {error.details()}") from None
            raise InsuranceUnavailable(f"insurance did not answer: {code.name}") from None

    async def close(self) -> None:
        await self._channel.close()
