"""The FHIR R4 facade: HTTP and `application/fhir+json` in front of the gRPC services.

It decides nothing. The caller's bearer credential and a correlation id go with every gRPC
call it makes, so each service authenticates the caller and applies its role and its rules
exactly as for a gRPC client; the facade only translates (services/fhir/inbound.py and
outbound.py) and answers a refusal as an OperationOutcome naming the element at fault.

    python -m services.fhir.app
"""
from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Callable

import grpc
import structlog
from aiohttp import web
from eprescription.common.v1 import common_pb2
from eprescription.insurance.v1 import insurance_pb2, insurance_pb2_grpc
from eprescription.pharmacy.v1 import pharmacy_pb2, pharmacy_pb2_grpc
from eprescription.prescribing.v1 import prescribing_pb2, prescribing_pb2_grpc
from google.rpc import error_details_pb2

from services.common import dates, eventloop, metrics
from services.common.grpc_errors import details_of
from services.common.limits import MAX_MESSAGE_BYTES
from services.common.logging import configure_logging, correlation_id, load_mask_key, new_correlation_id
from services.fhir import outbound
from services.fhir.config import Settings
from services.fhir.inbound import BundleRefused, Submission, read_bundle
from services.kernel.calendar import local_day

FHIR_JSON = "application/fhir+json"
ACCEPTED_TYPES = frozenset({FHIR_JSON, "application/json"})
log = structlog.get_logger("fhir")

# gRPC status -> (HTTP status, FHIR issue type)
HTTP_OF = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "value"),
    grpc.StatusCode.FAILED_PRECONDITION: (422, "business-rule"),
    grpc.StatusCode.NOT_FOUND: (404, "not-found"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "forbidden"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "login"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "throttled"),
    grpc.StatusCode.UNAVAILABLE: (503, "transient"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout"),
}


class FhirError(Exception):
    """An answer other than success, as an OperationOutcome."""

    def __init__(self, status: int, issues: list[dict], headers: dict | None = None):
        self.status, self.issues, self.headers = status, issues, headers or {}
        super().__init__(f"{status}: {issues}")


def _json_default(value):
    if isinstance(value, Decimal):
        return float(value)  # doses have at most 3 decimals: the shortest float text is exact
    raise TypeError(f"{type(value).__name__} is not JSON")


def fhir_response(resource: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    body = json.dumps(resource, ensure_ascii=False, default=_json_default)
    return web.Response(status=status, text=body, content_type=FHIR_JSON, headers=headers)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number FHIR allows")


def parse_body(raw: bytes) -> object:
    try:
        return json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise FhirError(400, [outbound.issue("error", "structure", f"the body is not JSON: {reason}")]) from None


class Backends:
    def __init__(self, settings: Settings):
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        pki = settings.common.pki
        self._channels = [pki.aio_channel(address, options=options) for address in
                          (settings.prescribing_address, settings.pharmacy_address, settings.insurance_address)]
        self.prescribing = prescribing_pb2_grpc.PrescribingServiceStub(self._channels[0])
        self.pharmacy = pharmacy_pb2_grpc.PharmacyServiceStub(self._channels[1])
        self.insurance = insurance_pb2_grpc.InsuranceServiceStub(self._channels[2])
        self.timeout = settings.backend_timeout_seconds

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


def _issues_of(error: grpc.aio.AioRpcError, locate: Callable[[str], str]) -> list[dict]:
    _, issue_code = HTTP_OF.get(error.code(), (500, "exception"))
    reason, out = "", []
    for detail in details_of(error):
        if isinstance(detail, error_details_pb2.ErrorInfo):
            reason = detail.reason
    for detail in details_of(error):
        if isinstance(detail, error_details_pb2.BadRequest):
            for v in detail.field_violations:
                rule, _, text = v.description.partition(": ")
                code = "required" if rule.endswith("_REQUIRED") else "value"
                out.append(outbound.issue("error", code, text or v.description, locate(v.field), rule if text else reason))
        elif isinstance(detail, error_details_pb2.PreconditionFailure):
            for v in detail.violations:
                rule, _, text = v.description.partition(": ")
                out.append(outbound.issue("error", issue_code, text or v.description, locate(v.subject),
                                          rule if text else reason))
    if not out:
        out.append(outbound.issue("error", issue_code, error.details() or error.code().name, "", reason))
    return out


class Facade:
    def __init__(self, settings: Settings, backends: Backends, clock: Callable[[], datetime]):
        self.settings, self.backends, self.clock = settings, backends, clock
        self.base = settings.base_url
        self.inflight = 0

    async def call(self, method, message, request: web.Request, locate: Callable[[str], str] | None = None):
        metadata = [("x-correlation-id", correlation_id.get() or new_correlation_id())]
        credential = request.headers.get("Authorization")
        if credential:
            metadata.append(("authorization", credential))
        try:
            return await method(message, metadata=tuple(metadata), timeout=self.backends.timeout)
        except grpc.aio.AioRpcError as error:
            status, _ = HTTP_OF.get(error.code(), (500, "exception"))
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {"Retry-After": "1"} if status in (429, 503, 504) else {}
            raise FhirError(status, _issues_of(error, locate or (lambda f: f)), headers) from None

    # POST /fhir/Bundle

    async def submit_bundle(self, request: web.Request) -> web.Response:
        if request.content_type not in ACCEPTED_TYPES:
            raise FhirError(415, [outbound.issue("error", "not-supported",
                                                 f"send {FHIR_JSON} (got {request.content_type or 'no type'})")])
        bundle = parse_body(await request.read())
        try:
            submission = read_bundle(bundle, local_day(self.clock()))
        except BundleRefused as refused:
            raise FhirError(400, [outbound.issue("error", i.code, i.message, i.expression, i.rule)
                                  for i in refused.issues]) from None
        reply = await self.call(self.backends.prescribing.IssuePrescription, submission.request, request,
                                locate=lambda f: _locate(submission, f))
        rx = reply.prescription
        resources = outbound.medication_requests(rx, common_pb2.PRESCRIPTION_STATUS_ACTIVE)
        found = outbound.warnings(reply, submission.drugs)
        if found:
            resources.append({**outbound.outcome(found), "id": f"{rx.code}-warnings"})
        return fhir_response(outbound.collection(self.base, resources, self.clock()), 201,
                             {"Location": f"{self.base}/MedicationRequest?group-identifier={rx.code}"})

    # GET /fhir/MedicationRequest?group-identifier=CODE, GET /fhir/MedicationRequest/{id}

    async def _prescription(self, code: str, request: web.Request):
        return await self.call(self.backends.prescribing.GetPrescription,
                               prescribing_pb2.GetPrescriptionRequest(code=code), request,
                               locate=lambda f: "group-identifier")

    def _requests_of(self, reply) -> list[dict]:
        progress = {l.line_number: (l.dispensed, l.prescribed - l.dispensed) for l in reply.lines}
        return outbound.medication_requests(reply.prescription, reply.status, progress, successor=reply.replaced_by)

    async def search_requests(self, request: web.Request) -> web.Response:
        code = _token(request, "group-identifier")
        try:
            resources = self._requests_of(await self._prescription(code, request))
        except FhirError as error:
            if error.status != 404:
                raise
            resources = []
        return fhir_response(outbound.searchset(self.base, resources, str(request.url)))

    async def read_request(self, request: web.Request) -> web.Response:
        code, line = _split_request_id(request.match_info["id"])
        for resource in self._requests_of(await self._prescription(code, request)):
            if resource["id"] == outbound.request_id(code, line):
                return fhir_response(resource)
        raise FhirError(404, [outbound.issue("error", "not-found", f"no MedicationRequest {code}-{line}")])

    # GET /fhir/MedicationDispense?prescription=CODE (or MedicationRequest/{id})

    async def search_dispenses(self, request: web.Request) -> web.Response:
        wanted = _token(request, "prescription")
        line = None
        if wanted.startswith("MedicationRequest/"):
            wanted, line = _split_request_id(wanted.removeprefix("MedicationRequest/"))
        try:
            listing = await self.call(self.backends.pharmacy.ListDispenses,
                                      pharmacy_pb2.ListDispensesRequest(code=wanted), request,
                                      locate=lambda f: "prescription")
            resources = outbound.medication_dispenses(listing)
        except FhirError as error:
            if error.status != 404:
                raise
            resources = []
        if line is not None:
            suffix = f"/{outbound.request_id(wanted, line)}"
            resources = [r for r in resources if r["authorizingPrescription"][0]["reference"].endswith(suffix)]
        return fhir_response(outbound.searchset(self.base, resources, str(request.url)))

    # GET /fhir/ClaimResponse/{claim id}

    async def read_claim(self, request: web.Request) -> web.Response:
        reply = await self.call(self.backends.insurance.GetClaim,
                                insurance_pb2.GetClaimRequest(claim_id=request.match_info["id"]), request,
                                locate=lambda f: "ClaimResponse.id")
        return fhir_response(outbound.claim_response(reply))

    # GET /fhir/CoverageEligibilityResponse?patient-identifier=CARD&provider=FACILITY&date=YYYY-MM-DD

    async def check_eligibility(self, request: web.Request) -> web.Response:
        card, facility = _token(request, "patient-identifier"), _token(request, "provider", required=False)
        raw_day = request.query.get("date", "")
        try:
            day = date.fromisoformat(raw_day) if raw_day else local_day(self.clock())
        except ValueError:
            raise FhirError(400, [outbound.issue("error", "value", "date is YYYY-MM-DD", "date")]) from None
        reply = await self.call(self.backends.insurance.CheckEligibility,
                                insurance_pb2.CheckEligibilityRequest(card_identifier=card, facility_code=facility,
                                                                      date=dates.to_proto(day)), request,
                                locate=lambda f: {"card_identifier": "patient-identifier",
                                                  "facility_code": "provider", "date": "date"}.get(f, f))
        resource = outbound.eligibility_response(reply, card, facility, day, uuid.uuid4().hex, self.clock())
        return fhir_response(outbound.searchset(self.base, [resource], str(request.url)))

    # GET /fhir/metadata

    async def capabilities(self, request: web.Request) -> web.Response:
        def searchable(kind: str, *params: tuple[str, str], read: bool = False) -> dict:
            entry: dict = {"type": kind, "interaction": ([{"code": "read"}] if read else [])}
            if params:
                entry["interaction"].append({"code": "search-type"})
                entry["searchParam"] = [{"name": n, "type": t} for n, t in params]
            return entry
        return fhir_response({
            "resourceType": "CapabilityStatement", "status": "active", "date": self.clock().date().isoformat(),
            "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
            "implementation": {"description": "E-prescription platform FHIR facade", "url": self.base},
            "rest": [{"mode": "server",
                      "security": {"description": "Bearer credentials, the same as the gRPC API's, with the same roles"},
                      "resource": [
                          {"type": "Bundle", "interaction": [{"code": "create"}]},
                          searchable("MedicationRequest", ("group-identifier", "token"), read=True),
                          searchable("MedicationDispense", ("prescription", "reference")),
                          searchable("ClaimResponse", read=True),
                          searchable("CoverageEligibilityResponse", ("patient-identifier", "token"),
                                     ("provider", "token"), ("date", "date")),
                      ]}]})


def _locate(submission: Submission, request_field: str) -> str:
    if "," in request_field or request_field in submission.drugs:   # safety findings name drug codes
        for code in request_field.split(","):
            if code in submission.drugs:
                return submission.drugs[code]
    return submission.expression_of(request_field)


def _token(request: web.Request, name: str, required: bool = True) -> str:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise FhirError(400, [outbound.issue("error", "not-supported", f"give {name} once", name)])
    value = values[0].strip() if values else ""
    if "|" in value:   # a token search: system|value
        value = value.rsplit("|", 1)[1]
    if required and not value:
        raise FhirError(400, [outbound.issue("error", "required", f"the search needs {name}", name)])
    if len(value) > 200:
        raise FhirError(400, [outbound.issue("error", "too-long", f"{name} is at most 200 characters", name)])
    return value


def _split_request_id(value: str) -> tuple[str, int]:
    code, _, line = value.rpartition("-")
    if not code or not line.isdigit() or len(line) > 3:
        raise FhirError(404, [outbound.issue("error", "not-found",
                                             f"{value[:80]!r} is not a MedicationRequest id (CODE-LINE)")])
    return code, int(line)


ISSUE_OF_STATUS = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                   413: "too-long", 415: "not-supported", 429: "throttled"}


def make_app(facade: Facade) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler):
        started = time.perf_counter()
        cid = request.headers.get("X-Correlation-Id", "")[:64] or new_correlation_id()
        token = correlation_id.set(cid)
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        limited = facade.inflight >= facade.settings.max_concurrent_requests
        facade.inflight += 1
        try:
            if limited:
                raise FhirError(429, [outbound.issue("error", "throttled", "too many requests at once; retry")],
                                {"Retry-After": "1"})
            response = await handler(request)
        except FhirError as error:
            response = fhir_response(outbound.outcome(error.issues), error.status, error.headers)
        except web.HTTPException as error:
            issue_code = ISSUE_OF_STATUS.get(error.status, "exception")
            response = fhir_response(outbound.outcome([outbound.issue("error", issue_code, error.reason)]),
                                     error.status)
        except Exception:
            log.exception("fhir.failed", route=route)
            response = fhir_response(outbound.outcome([outbound.issue(
                "error", "exception", f"internal error (correlation id {cid})")]), 500)
        finally:
            facade.inflight -= 1
            correlation_id.reset(token)
        response.headers["X-Correlation-Id"] = cid
        elapsed = time.perf_counter() - started
        metrics.HTTP_REQUESTS.labels(request.method, route, str(response.status)).inc()
        metrics.HTTP_SECONDS.labels(request.method, route).observe(elapsed)
        log.info("http.request", method=request.method, route=route, status=response.status,
                 ms=round(elapsed * 1000, 1), correlation_id=cid)
        return response

    app = web.Application(middlewares=[guard], client_max_size=facade.settings.max_body_bytes)
    app.add_routes([
        web.get("/fhir/metadata", facade.capabilities),
        web.post("/fhir/Bundle", facade.submit_bundle),
        web.get("/fhir/MedicationRequest", facade.search_requests),
        web.get("/fhir/MedicationRequest/{id}", facade.read_request),
        web.get("/fhir/MedicationDispense", facade.search_dispenses),
        web.get("/fhir/ClaimResponse/{id}", facade.read_claim),
        web.get("/fhir/CoverageEligibilityResponse", facade.check_eligibility),
    ])
    return app


async def serve(settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
    if metrics.serve(settings.common.metrics_port):
        log.info("metrics.serving", port=settings.common.metrics_port)
    backends = Backends(settings)
    runner = web.AppRunner(make_app(Facade(settings, backends, clock)), access_log=None)
    await runner.setup()
    pki = settings.common.pki
    context = pki.server_context("fhir") if pki.enabled else None
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=context)
    await site.start()
    reloader = asyncio.create_task(_reload_certificate(context, pki)) if context else None
    if context is None:
        log.warning("fhir.plaintext", reason="EPRX_PLAINTEXT_DEV=1: no TLS, for development only")
    log.info("fhir.serving", url=settings.base_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    if reloader is not None:
        reloader.cancel()
    log.info("fhir.stopping")
    await runner.cleanup()
    await backends.close()


async def _reload_certificate(context, pki, interval: float = 5.0) -> None:
    """A renewed certificate is used for new connections within `interval` seconds."""
    files = (pki.cert_file("fhir"), pki.key_file("fhir"))
    seen = tuple(f.stat().st_mtime_ns for f in files)
    while True:
        await asyncio.sleep(interval)
        try:
            stamp = tuple(f.stat().st_mtime_ns for f in files)
            if stamp != seen:
                context.load_cert_chain(str(files[0]), str(files[1]))
                seen = stamp
                log.info("fhir.certificate_reloaded")
        except (OSError, ValueError) as exc:   # half-written: try again next time
            log.warning("fhir.certificate_reload_failed", error=str(exc)[:200])


def main() -> None:
    settings = Settings.from_env()
    configure_logging("fhir", fmt=settings.common.log_format, level=settings.common.log_level,
                      mask_key=load_mask_key(settings.common.run_dir, settings.common.log_mask_key))
    eventloop.install()
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
