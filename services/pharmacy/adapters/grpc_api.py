"""PharmacyService over gRPC: requests to commands, domain results to responses, domain
refusals to statuses with details. Nothing is decided here."""
from __future__ import annotations

import grpc
from eprescription.common.v1 import common_pb2
from eprescription.pharmacy.v1 import pharmacy_pb2, pharmacy_pb2_grpc

from services.common import dates, privacy
from services.common.audit import Audited
from services.common.auth import Role, Scope
from services.common.grpc_errors import FieldViolation, RpcFailure, abort
from services.common.grpc_server import ServiceBinding
from services.common.request_context import caller
from services.kernel.status import Status
from services.pharmacy.domain.commands import DispenseMedication, ListDispenses, LookupPrescription, ReverseDispense
from services.pharmacy.domain.errors import (InsuranceUnavailable, InvalidRequest, NotFound, NotPermitted,
                                             PharmacyError, Refused, RequestConflict)
from services.pharmacy.domain.model import (DispenseRecord, DispenseResult, Ledger, LookupResult, ReversalResult,
                                            SoldLine)
from services.pharmacy.handlers import Pharmacy

SERVICE_NAME = pharmacy_pb2.DESCRIPTOR.services_by_name["PharmacyService"].full_name

METHOD_ROLES = {
    "LookupPrescription": frozenset({Role.PHARMACY, Role.OPERATOR}),
    "DispensePrescription": frozenset({Role.PHARMACY}),
    "ReverseDispense": frozenset({Role.PHARMACY}),
    "ListDispenses": frozenset({Role.PHARMACY, Role.PRESCRIBER, Role.OPERATOR}),
}
STATUS = {Status.ACTIVE: common_pb2.PRESCRIPTION_STATUS_ACTIVE,
          Status.PARTIALLY_DISPENSED: common_pb2.PRESCRIPTION_STATUS_PARTIALLY_DISPENSED,
          Status.COMPLETED: common_pb2.PRESCRIPTION_STATUS_COMPLETED,
          Status.CANCELLED: common_pb2.PRESCRIPTION_STATUS_CANCELLED,
          Status.REPLACED: common_pb2.PRESCRIPTION_STATUS_REPLACED,
          Status.EXPIRED: common_pb2.PRESCRIPTION_STATUS_EXPIRED}


def _code_of_dispense(dispense_id: str) -> str:
    """A dispense id is d-<code>-<token>: the code its sale was made under."""
    return dispense_id[2:].rsplit("-", 1)[0] if dispense_id.startswith("d-") else ""


# Who each call concerns, for the audit trail (services/common/audit.py); a lookup of a
# protected prescription names no patient (the code links it to the prescriber's record).
AUDITED = {
    "LookupPrescription": Audited(lambda q, a: (a.prescription.patient.identifier if a else None, q.code)),
    "DispensePrescription": Audited(lambda q, a: (None, q.code), change=True),
    "ReverseDispense": Audited(lambda q, a: (None, _code_of_dispense(q.dispense_id)), change=True),
    "ListDispenses": Audited(lambda q, a: (None, q.code)),
}


def failure_of(error: PharmacyError) -> RpcFailure:
    if isinstance(error, InvalidRequest):
        return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"{error.field}: {error}", error.rule,
                          (FieldViolation(error.field, f"{error.rule}: {error}"),))
    if isinstance(error, Refused):
        return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, str(error), error.rule,
                          (FieldViolation(error.subject, f"{error.rule}: {error}"),), dict(error.details))
    if isinstance(error, NotFound):
        return RpcFailure(grpc.StatusCode.NOT_FOUND, str(error), "NOT_FOUND")
    if isinstance(error, NotPermitted):
        return RpcFailure(grpc.StatusCode.PERMISSION_DENIED, str(error), error.rule)
    if isinstance(error, RequestConflict):
        return RpcFailure(grpc.StatusCode.ALREADY_EXISTS, str(error), "IDEMPOTENCY_KEY_REUSED",
                          (FieldViolation("idempotency_key", str(error)),))
    if isinstance(error, InsuranceUnavailable):
        return RpcFailure(grpc.StatusCode.UNAVAILABLE, f"{error}; nothing was recorded (retry, or sell as self-pay)",
                          "INSURANCE_UNAVAILABLE")
    raise TypeError(f"unmapped domain error {type(error).__name__}")


# Requests to commands

def dispense_command(request: pharmacy_pb2.DispensePrescriptionRequest, pharmacy: str,
                     may_substitute: bool) -> DispenseMedication:
    payment = request.WhichOneof("payment")
    if not (payment == "bhyt_card" or (payment == "self_pay" and request.self_pay)):
        raise InvalidRequest("payment", "PAYMENT_REQUIRED", "say bhyt_card or self_pay")
    return DispenseMedication(
        code=request.code.strip().lower(), pharmacy=pharmacy, idempotency_key=request.idempotency_key,
        bhyt_card=request.bhyt_card if payment == "bhyt_card" else None, may_substitute=may_substitute,
        invoice_number=request.invoice_number.strip(),
        lines=tuple(SoldLine(l.line_number, l.drug_code, l.quantity, l.unit_price_vnd, l.substitution)
                    for l in request.lines))


# Results to responses

def _ledger_lines(ledger: Ledger, drug_codes: bool) -> list[pharmacy_pb2.LedgerLine]:
    prescribed, dispensed = ledger.prescribed, ledger.dispensed
    return [pharmacy_pb2.LedgerLine(line_number=line.line_number, drug_code=line.drug_code if drug_codes else "",
                                    prescribed=prescribed[line.line_number], dispensed=dispensed[line.line_number],
                                    remaining=ledger.remaining.get(line.line_number, 0))
            for line in sorted(ledger.prescription.lines, key=lambda l: l.line_number)]


def lookup_response(result: LookupResult) -> pharmacy_pb2.LookupPrescriptionResponse:
    rx = common_pb2.Prescription.FromString(result.ledger.prescription.document)
    shown = privacy.without_identity(rx) if result.identity_hidden else rx
    return pharmacy_pb2.LookupPrescriptionResponse(
        prescription=shown, status=STATUS[result.status], signature_verified=result.signature_verified,
        identity_hidden=result.identity_hidden, replaced_by=result.ledger.successor,
        first_dispense_deadline=dates.to_proto(result.ledger.prescription.valid_until),
        lines=_ledger_lines(result.ledger, drug_codes=True))


def dispense_response(result: DispenseResult) -> pharmacy_pb2.DispensePrescriptionResponse:
    receipt = result.receipt
    return pharmacy_pb2.DispensePrescriptionResponse(
        dispense_id=receipt.dispense_id, claim_id=receipt.claim_id, status=STATUS[result.status],
        fund_total_vnd=receipt.fund_total_vnd, patient_total_vnd=receipt.patient_total_vnd,
        lines=[pharmacy_pb2.DispensedLineResult(line_number=l.line_number, quantity=l.quantity,
                                                remaining=result.remaining[l.line_number], insured_vnd=l.insured_vnd,
                                                fund_vnd=l.fund_vnd, patient_vnd=l.patient_vnd,
                                                reimbursable_vnd=l.reimbursable_vnd)
               for l in receipt.lines],
        reimbursement_id=receipt.reimbursement_id, reimbursable_total_vnd=receipt.reimbursable_total_vnd)


def reverse_response(result: ReversalResult) -> pharmacy_pb2.ReverseDispenseResponse:
    return pharmacy_pb2.ReverseDispenseResponse(dispense_id=result.dispense_id,
                                                lines=_ledger_lines(result.ledger, drug_codes=False))


def dispenses_response(code: str, records: list[DispenseRecord]) -> pharmacy_pb2.ListDispensesResponse:
    response = pharmacy_pb2.ListDispensesResponse(code=code)
    for record in records:
        sale = response.dispenses.add(
            dispense_id=record.dispense_id, pharmacy_code=record.pharmacy, claim_id=record.claim_id,
            lines=[pharmacy_pb2.DispenseLine(line_number=l.line_number, drug_code=l.drug_code, quantity=l.quantity,
                                             unit_price_vnd=l.unit_price_vnd, substitution=l.substitution)
                   for l in record.lines])
        sale.dispensed_at.FromDatetime(record.dispensed_at)
        if record.reversed_at is not None:
            sale.reversed_at.FromDatetime(record.reversed_at)
    return response


class PharmacyServicer(pharmacy_pb2_grpc.PharmacyServiceServicer):
    def __init__(self, handlers: Pharmacy):
        self._h = handlers

    async def _run(self, context, call):
        try:
            return await call()
        except PharmacyError as error:
            await abort(context, failure_of(error))

    async def LookupPrescription(self, request, context):
        return await self._run(context, lambda: self._lookup(request))

    async def DispensePrescription(self, request, context):
        return await self._run(context, lambda: self._dispense(request))

    async def ReverseDispense(self, request, context):
        return await self._run(context, lambda: self._reverse(request))

    async def ListDispenses(self, request, context):
        return await self._run(context, lambda: self._dispenses(request))

    async def _dispenses(self, request):
        who = caller()
        query = ListDispenses(request.code, who.role.value, who.identity)
        records = await self._h.dispenses(query)
        return dispenses_response(query.code.strip().lower(), records)

    async def _lookup(self, request):
        return lookup_response(await self._h.lookup(LookupPrescription(request.code)))

    async def _dispense(self, request):
        who = caller()
        return dispense_response(await self._h.dispense(dispense_command(request, who.identity,
                                                                         who.may(Scope.SUBSTITUTE))))

    async def _reverse(self, request):
        who = caller()
        return reverse_response(await self._h.reverse(ReverseDispense(request.dispense_id, who.identity,
                                                                      request.reason)))


def binding(servicer: pharmacy_pb2_grpc.PharmacyServiceServicer) -> ServiceBinding:
    return ServiceBinding(SERVICE_NAME, pharmacy_pb2_grpc.add_PharmacyServiceServicer_to_server,
                          servicer, METHOD_ROLES, AUDITED)
