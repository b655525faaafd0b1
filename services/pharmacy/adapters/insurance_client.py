"""The pharmacy service's client of InsuranceService: a quote with a deadline, answered as
the domain's Quote or one of its refusals."""
from __future__ import annotations

import time
from datetime import date

import grpc
from google.rpc import error_details_pb2
from eprescription.events.v1 import events_pb2
from eprescription.insurance.v1 import insurance_pb2, insurance_pb2_grpc

from services.common import dates, metrics
from services.common.grpc_errors import details_of
from services.common.limits import MAX_MESSAGE_BYTES
from services.common.logging import correlation_id
from services.common.tls import Pki
from services.pharmacy.domain.errors import InsuranceUnavailable, InvalidRequest, Refused
from services.pharmacy.domain.model import Prescription, Quote, QuotedAmounts, QuoteLine

# The insurer's refusals the counter hears by name; any other is BHYT_NOT_ELIGIBLE.
PASSED_ON = frozenset({"BHYT_CARD_NOT_PATIENTS", "SIGNATURE_INVALID"})
SERVICE = insurance_pb2.DESCRIPTOR.services_by_name["InsuranceService"].full_name
QUOTE_STARTED = metrics.GRPC_CLIENT_STARTED.labels("unary", SERVICE, "QuoteCoverage")
QUOTE_OK = metrics.GRPC_CLIENT_HANDLED.labels("unary", SERVICE, "QuoteCoverage", "OK")
QUOTE_SECONDS = metrics.GRPC_CLIENT_SECONDS.labels("unary", SERVICE, "QuoteCoverage")
PAYEES = {events_pb2.PAYEE_FACILITY: "facility", events_pb2.PAYEE_PATIENT: "patient", events_pb2.PAYEE_NONE: "none"}


class InsuranceClient:
    def __init__(self, address: str, token: str, timeout_seconds: float, pki: Pki | None = None):
        """With TLS: mutual TLS, the pharmacy named by its client certificate and no token."""
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        self._channel = (pki.aio_channel(address, client="client-pharmacy", options=options) if pki and pki.enabled
                         else grpc.aio.insecure_channel(address, options=options))
        self._stub = insurance_pb2_grpc.InsuranceServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout_seconds

    async def quote(self, card: str, day: date, prescription: Prescription, lines: list[QuoteLine],
                    pharmacy: str) -> Quote:
        request = insurance_pb2.QuoteCoverageRequest(
            card_identifier=card, date=dates.to_proto(day), facility_code=prescription.facility_code,
            pharmacy_code=pharmacy,
            lines=[insurance_pb2.QuoteLine(line_number=l.line_number, drug_code=l.drug_code, quantity=l.quantity,
                                           unit_price_vnd=l.unit_price_vnd) for l in lines])
        request.prescription.MergeFromString(prescription.document)
        QUOTE_STARTED.inc()
        started = time.perf_counter()
        try:
            reply = await self._stub.QuoteCoverage(
                request, timeout=self._timeout,
                metadata=self._metadata + (("x-correlation-id", correlation_id.get() or ""),))
        except grpc.aio.AioRpcError as error:
            code = error.code()
            QUOTE_SECONDS.observe(time.perf_counter() - started)
            metrics.GRPC_CLIENT_HANDLED.labels("unary", SERVICE, "QuoteCoverage", code.name).inc()
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                reasons = [d.reason for d in details_of(error) if isinstance(d, error_details_pb2.ErrorInfo)]
                rule = reasons[0] if reasons and reasons[0] in PASSED_ON else "BHYT_NOT_ELIGIBLE"
                raise Refused(rule, f"insurance: {error.details()}", "bhyt_card") from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidRequest("bhyt_card", "BHYT_CARD_INVALID", f"insurance: {error.details()}") from None
            raise InsuranceUnavailable(f"insurance did not answer: {code.name}") from None
        QUOTE_SECONDS.observe(time.perf_counter() - started)
        QUOTE_OK.inc()
        return Quote(reply.quote_id, reply.member_id, reply.card_code,
                     {q.line_number: QuotedAmounts(q.insured_vnd, q.fund_vnd, q.patient_vnd, q.payment_ratio,
                                                   q.reimbursable_vnd) for q in reply.lines},
                     PAYEES.get(reply.payee, "facility"))

    async def close(self) -> None:
        await self._channel.close()
