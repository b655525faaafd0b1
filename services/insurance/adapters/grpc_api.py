"""InsuranceService over gRPC: requests to commands, domain results to responses, refusals
to statuses. Nothing is decided here."""
from __future__ import annotations

import grpc
from eprescription.insurance.v1 import insurance_pb2, insurance_pb2_grpc

from services.common import dates
from services.common.audit import Audited, card_identifier
from services.common.auth import Role
from services.common.grpc_errors import FieldViolation, RpcFailure, abort
from services.common.grpc_server import ServiceBinding
from services.insurance.adapters.events import OUTCOMES, PAYEES, adjudicated_message, attached_of
from services.insurance.domain.adjudication import Adjudication
from services.insurance.domain.commands import CheckEligibility, GetClaim, QuoteCoverage, QuoteLine
from services.insurance.domain.model import (Eligibility, InsuranceError, InvalidIdentifier, NotEligible, UnknownDrug,
                                             UnknownMember)
from services.insurance.handlers import CoverageQuote, Insurance

SERVICE_NAME = insurance_pb2.DESCRIPTOR.services_by_name["InsuranceService"].full_name

METHOD_ROLES = {
    "CheckEligibility": frozenset({Role.PHARMACY, Role.SERVICE, Role.INSURER, Role.PRESCRIBER}),
    "QuoteCoverage": frozenset({Role.PHARMACY, Role.SERVICE}),
    "GetClaim": frozenset({Role.INSURER}),
}


# Who each call concerns, for the audit trail (services/common/audit.py)
AUDITED = {
    "CheckEligibility": Audited(lambda q, a: (card_identifier(q.card_identifier), "")),
    "QuoteCoverage": Audited(lambda q, a: (q.prescription.patient.identifier if q.HasField("prescription")
                                           and q.prescription.patient.HasField("identifier")
                                           else card_identifier(q.card_identifier), q.prescription.code)),
    "GetClaim": Audited(lambda q, a: (("bhyt_card", a.adjudication.card_code) if a else None,
                                      a.adjudication.prescription_code if a else "")),
}


def failure_of(error: InsuranceError) -> RpcFailure:
    if isinstance(error, (InvalidIdentifier, UnknownDrug)):
        reason = "IDENTIFIER_FORMAT" if isinstance(error, InvalidIdentifier) else "LINE_INVALID"
        return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"{error.field}: {error}", reason,
                          (FieldViolation(error.field, str(error)),))
    if isinstance(error, UnknownMember):
        return RpcFailure(grpc.StatusCode.NOT_FOUND, str(error), "NOT_FOUND")
    if isinstance(error, NotEligible):
        return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, str(error), error.reason,
                          (FieldViolation(error.field, str(error)),))
    raise TypeError(f"unmapped domain error {type(error).__name__}")


def _day(request, field: str = "date"):
    """None when the date is absent (today); InvalidIdentifier when it is not a calendar date."""
    if not request.HasField(field):
        return None
    day = dates.from_proto(getattr(request, field))
    if day is None:
        raise InvalidIdentifier(field, "not a calendar date")
    return day


def eligibility_response(result: Eligibility) -> insurance_pb2.CheckEligibilityResponse:
    reply = insurance_pb2.CheckEligibilityResponse(
        member_id=result.member_id, eligible=result.eligible, reason=result.reason,
        benefit_percent=result.benefit_percent, copay_exempt=result.copay_exempt)
    if result.card is not None:
        reply.card_code, reply.registered_facility = result.card.card_code, result.card.registered_facility
        reply.valid_from.CopyFrom(dates.to_proto(result.card.valid_from))
        reply.valid_to.CopyFrom(dates.to_proto(result.card.valid_to))
    return reply


def quote_response(result: CoverageQuote) -> insurance_pb2.QuoteCoverageResponse:
    split = result.split
    return insurance_pb2.QuoteCoverageResponse(
        quote_id=result.quote_id, member_id=result.member_id, card_code=result.card_code,
        insured_total_vnd=split.insured_total, fund_total_vnd=split.fund_total, patient_total_vnd=split.patient_total,
        rounding_rule=result.rounding_rule, visit_cost_vnd=split.visit_cost_vnd, copay_exempt=split.exempt,
        exempt_reason=split.exempt_reason, payee=PAYEES[split.payee], reimbursable_total_vnd=split.reimbursable_total,
        lines=[insurance_pb2.QuotedLine(
            line_number=a.line_number, drug_code=a.drug_code, covered=a.covered, payment_ratio=a.payment_ratio,
            insured_vnd=a.insured_vnd, fund_vnd=a.fund_vnd, patient_vnd=a.patient_vnd, reason_code=a.reason_code,
            reference_price_vnd=a.reference_price_vnd, price_basis=a.price_basis, reimbursable_vnd=a.reimbursable_vnd)
            for a in split.lines])


def claim_response(result: Adjudication) -> insurance_pb2.GetClaimResponse:
    return insurance_pb2.GetClaimResponse(claim_id=result.claim_id, outcome=OUTCOMES[result.outcome],
                                          adjudication=adjudicated_message(result))


class InsuranceServicer(insurance_pb2_grpc.InsuranceServiceServicer):
    def __init__(self, handlers: Insurance):
        self._h = handlers

    async def _run(self, context, call):
        try:
            return await call()
        except InsuranceError as error:
            await abort(context, failure_of(error))

    async def CheckEligibility(self, request, context):
        async def call():
            return eligibility_response(await self._h.eligibility(
                CheckEligibility(request.card_identifier, _day(request))))
        return await self._run(context, call)

    async def QuoteCoverage(self, request, context):
        async def call():
            command = QuoteCoverage(request.card_identifier, _day(request), request.facility_code, tuple(
                QuoteLine(l.line_number, l.drug_code, l.quantity, l.unit_price_vnd) for l in request.lines),
                attached_of(request.prescription) if request.HasField("prescription") else None,
                request.pharmacy_code)
            return quote_response(await self._h.quote(command))
        return await self._run(context, call)

    async def GetClaim(self, request, context):
        async def call():
            return claim_response(await self._h.claim(GetClaim(request.claim_id)))
        return await self._run(context, call)


def binding(servicer: insurance_pb2_grpc.InsuranceServiceServicer) -> ServiceBinding:
    return ServiceBinding(SERVICE_NAME, insurance_pb2_grpc.add_InsuranceServiceServicer_to_server,
                          servicer, METHOD_ROLES, AUDITED)
