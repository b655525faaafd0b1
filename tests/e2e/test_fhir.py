"""The FHIR facade end to end, over HTTP, in front of the whole running system: a hospital's
Bundle is issued through the same rules as IssuePrescription, a refusal names the element,
and the prescription, its sales, its claim and the card's eligibility read back as R4
resources that fhir.resources parses and HAPI FHIR's validator, offline, finds no error in."""
import asyncio
import json
import uuid
from pathlib import Path

import aiohttp
import grpc
import pytest
from eprescription.pharmacy.v1 import pharmacy_pb2, pharmacy_pb2_grpc

from services.common.auth import load_tokens
from services.fhir import systems as S
from tests.support.fhir import dumps, entry, errors, example, hapi_validate, loads, parse
from tests.support import eventually
from tests.support.insurance_fixtures import new_member

FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """Every resource the facade answered in this module, for the validator."""
    return tmp_path_factory.mktemp("fhir-samples")


class Client:
    def __init__(self, system, session: aiohttp.ClientSession, samples: Path):
        self.base = f"https://127.0.0.1:{system.settings.ports.fhir}/fhir"
        self.tokens = load_tokens(system.settings.credentials_file.parent / "tokens.json")
        self.session, self.samples = session, samples
        self.pki_context = system.settings.pki.client_context()

    async def call(self, method: str, path: str, caller: str | None, body: dict | None = None, keep: bool = True):
        headers = {"Accept": FHIR_JSON}
        if caller:
            headers["Authorization"] = f"Bearer {self.tokens[caller]}"
        data = None
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
            data = dumps(body).encode()
        async with self.session.request(method, f"{self.base}/{path}", headers=headers, data=data) as reply:
            assert reply.content_type == FHIR_JSON, await reply.text()
            resource = loads(await reply.read())
            if keep:
                parse(resource)   # every answer, success or refusal, is valid R4
                name = f"{len(list(self.samples.iterdir())):03d}-{resource['resourceType']}.json"
                (self.samples / name).write_text(dumps(resource))
            return reply.status, resource, reply.headers


@pytest.fixture
async def fhir(system, samples):
    connector = aiohttp.TCPConnector(ssl=system.settings.pki.client_context())
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Client(system, session, samples)


def bundle_for(member) -> dict:
    bundle = example()
    bundle["identifier"]["value"] = f"his-{uuid.uuid4().hex[:12]}"
    patient = entry(bundle, "Patient")
    patient["identifier"] = [{"system": S.NATIONAL_ID, "value": member.citizen_id},
                             {"system": S.INSURANCE_NUMBER, "value": member.cards[0].card_code}]
    return bundle


async def test_a_bundle_is_issued_sold_adjudicated_and_read_back_as_fhir(fhir, system, store):
    member = new_member(4)
    await store.upsert_member(member)
    bundle = bundle_for(member)
    status, answer, headers = await fhir.call("POST", "Bundle", "prescriber-hospital-a", bundle)
    assert status == 201, answer
    orders = [e["resource"] for e in answer["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]
    code = orders[0]["groupIdentifier"]["value"]
    assert [(o["id"], o["groupIdentifier"]["system"]) for o in orders] == [(f"{code}-1", S.PRESCRIPTION_CODE),
                                                                          (f"{code}-2", S.PRESCRIPTION_CODE)]
    assert headers["Location"].endswith(f"/MedicationRequest?group-identifier={code}")
    again, repeated, _ = await fhir.call("POST", "Bundle", "prescriber-hospital-a", bundle, keep=False)
    assert again == 201 and repeated["entry"][0]["resource"]["groupIdentifier"]["value"] == code  # a retry

    status, found, _ = await fhir.call("GET", f"MedicationRequest?group-identifier={S.PRESCRIPTION_CODE}|{code}",
                                       "pharmacy-a")
    assert status == 200 and found["total"] == 2
    assert found["entry"][1]["resource"]["dispenseRequest"]["quantity"]["value"] == 12
    status, one, _ = await fhir.call("GET", f"MedicationRequest/{code}-2", "pharmacy-a")
    assert status == 200 and one["medicationCodeableConcept"]["coding"][0]["code"] == "N02BE01-500T"

    # a sale at the hospital's dispensary, through the gRPC API, once the ledger is open
    async with system.settings.pki.aio_channel(f"127.0.0.1:{system.settings.ports.pharmacy}") as channel:
        pharmacy = pharmacy_pb2_grpc.PharmacyServiceStub(channel)
        sale = pharmacy_pb2.DispensePrescriptionRequest(
            idempotency_key=str(uuid.uuid4()), code=code, bhyt_card=member.cards[0].card_code,
            lines=[pharmacy_pb2.DispenseLine(line_number=2, drug_code="N02BE01-500T", quantity=6, unit_price_vnd=500)])
        auth = (("authorization", f"Bearer {fhir.tokens['pharmacy-a']}"),)

        async def sell():
            try:
                return await pharmacy.DispensePrescription(sale, metadata=auth)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND, error
                return None
        sold = await eventually(sell, message="the sale, once the ledger is open")
    assert sold and sold.claim_id

    status, dispenses, _ = await fhir.call("GET", f"MedicationDispense?prescription={code}", "pharmacy-b")
    assert status == 200 and dispenses["total"] == 1
    given = dispenses["entry"][0]["resource"]
    assert (given["status"], given["quantity"]["value"], given["authorizingPrescription"][0]["reference"]) == (
        "completed", 6, f"MedicationRequest/{code}-2")
    status, _, _ = await fhir.call("GET", f"MedicationDispense?prescription=MedicationRequest/{code}-2",
                                   "prescriber-hospital-a")
    assert status == 200
    status, refused, _ = await fhir.call("GET", f"MedicationDispense?prescription={code}", "prescriber-hospital-b")
    assert status == 403 and refused["issue"][0]["details"]["coding"][0]["code"] == "NOT_ISSUING_FACILITY"

    async def progressed():
        _, now, _ = await fhir.call("GET", f"MedicationRequest?group-identifier={code}", "pharmacy-a", keep=False)
        ext = {e["url"]: e["valueInteger"] for e in now["entry"][1]["resource"].get("extension", [])
               if "valueInteger" in e}
        return ext.get(S.EXT_DISPENSED) == 6 and ext.get(S.EXT_REMAINING) == 6
    assert await eventually(progressed, message="the sale in the prescription's progress")

    async def adjudicated():
        status, claim, _ = await fhir.call("GET", f"ClaimResponse/{sold.claim_id}", "insurer", keep=False)
        return claim if status == 200 else None
    claim = await eventually(adjudicated, message="the claim adjudicated")
    await fhir.call("GET", f"ClaimResponse/{sold.claim_id}", "insurer")  # kept for the validator
    totals = {t["category"]["coding"][0]["code"]: t["amount"]["value"] for t in claim["total"]}
    assert (totals["benefit"], totals["patient"]) == (sold.fund_total_vnd, sold.patient_total_vnd)
    assert claim["request"]["identifier"]["value"] == sold.claim_id and claim["preAuthRef"] == code
    status, _, _ = await fhir.call("GET", f"ClaimResponse/{sold.claim_id}", "pharmacy-a")
    assert status == 403

    status, eligible, _ = await fhir.call(
        "GET", f"CoverageEligibilityResponse?patient-identifier={member.cards[0].card_code}&provider=01001",
        "pharmacy-a")
    assert status == 200 and eligible["entry"][0]["resource"]["insurance"][0]["inforce"] is True
    status, unknown, _ = await fhir.call("GET", "CoverageEligibilityResponse?patient-identifier=DN4019999999999",
                                         "pharmacy-a")
    assert status in (200, 404) and (status == 404 or unknown["entry"][0]["resource"]["insurance"][0]["inforce"] is False)


async def test_refusals_are_operation_outcomes_naming_the_element(fhir, store):
    member = new_member(4)
    await store.upsert_member(member)
    bundle = bundle_for(member)
    entry(bundle, "MedicationRequest", 1)["dispenseRequest"]["quantity"]["value"] = 0
    entry(bundle, "Organization")["identifier"][0]["value"] = "79001"
    status, outcome, _ = await fhir.call("POST", "Bundle", "prescriber-hospital-a", bundle)
    assert status == 400 and outcome["resourceType"] == "OperationOutcome"
    named = {(i["details"]["coding"][0]["code"], i["expression"][0]) for i in outcome["issue"]}
    assert ("QUANTITY_POSITIVE", "Bundle.entry[5].resource.dispenseRequest.quantity.value") in named
    assert ("FACILITY_NOT_CALLER", "Bundle.entry[2].resource.identifier[0].value") in named

    status, outcome, headers = await fhir.call("POST", "Bundle", None, bundle_for(member))
    assert status == 401 and outcome["issue"][0]["code"] == "login" and headers["WWW-Authenticate"] == "Bearer"
    status, outcome, _ = await fhir.call("POST", "Bundle", "pharmacy-a", bundle_for(member))
    assert status == 403 and outcome["issue"][0]["code"] == "forbidden"
    status, outcome, _ = await fhir.call("POST", "Bundle", "prescriber-hospital-a", {"resourceType": "Patient"})
    assert status == 400 and outcome["issue"][0]["expression"] == ["Bundle"]
    status, found, _ = await fhir.call("GET", "MedicationRequest?group-identifier=01001zzzzzzz-c", "pharmacy-a")
    assert status == 200 and found["total"] == 0
    status, outcome, _ = await fhir.call("GET", "MedicationRequest", "pharmacy-a")
    assert status == 400 and outcome["issue"][0]["expression"] == ["group-identifier"]
    status, outcome, _ = await fhir.call("GET", "ClaimResponse/nope", "insurer")
    assert status in (400, 404)


async def test_hostile_bodies_get_an_outcome_not_a_crash(fhir):
    session, base = fhir.session, fhir.base
    headers = {"Authorization": f"Bearer {fhir.tokens['prescriber-hospital-a']}", "Content-Type": FHIR_JSON}
    cases = [(b"{" * 100_000, 400), (b"\xff\xfe not utf-8", 400), (b'{"resourceType": "Bundle", "x": NaN}', 400),
             (b"[1, 2, 3]", 400), (b" " * (2 * 1024 * 1024), 413)]
    for body, expected in cases:
        async with session.post(f"{base}/Bundle", data=body, headers=headers) as reply:
            assert reply.status == expected, (body[:20], reply.status)
            assert (await reply.json(content_type=FHIR_JSON))["resourceType"] == "OperationOutcome"
    async with session.post(f"{base}/Bundle", data=b"{}", headers={**headers, "Content-Type": "text/plain"}) as reply:
        assert reply.status == 415
    big = example()
    entry(big, "Patient")["name"][0]["text"] = "A" * 600_000   # inside the body limit, beyond the field's
    async with session.post(f"{base}/Bundle", data=dumps(big).encode(), headers=headers) as reply:
        outcome = await reply.json(content_type=FHIR_JSON)
        assert reply.status == 400, outcome
        assert "Bundle.entry[0].resource.name[0]" in json.dumps(outcome)
    # a thousand requests at once: each is answered (served, or throttled with 429), none hangs
    unlimited_connector = aiohttp.TCPConnector(limit=0, ssl=fhir.pki_context)
    async with aiohttp.ClientSession(connector=unlimited_connector) as unlimited:
        async def metadata():
            async with unlimited.get(f"{base}/metadata") as reply:
                return reply.status
        answers = await asyncio.gather(*(metadata() for _ in range(1000)))
    assert set(answers) <= {200, 429} and answers.count(200) > 0


def test_every_resource_the_facade_answered_passes_the_hapi_validator(samples):
    """Runs last in this module: everything kept above, the README's Bundle, and one resource
    the validator must reject (so a validator that finds nothing cannot pass)."""
    kept = sorted(p.name for p in samples.iterdir())
    kinds = set()
    for path in samples.iterdir():
        resource = json.loads(path.read_text())
        kinds |= {resource["resourceType"]} | {e["resource"]["resourceType"] for e in resource.get("entry", [])}
    assert {"MedicationRequest", "MedicationDispense", "ClaimResponse", "CoverageEligibilityResponse",
            "OperationOutcome", "Bundle"} <= kinds
    readme = Path(__file__).resolve().parents[2] / "examples" / "fhir" / "prescription-bundle.json"
    (samples / "readme-bundle.json").write_text(readme.read_text())
    (samples / "zz-broken.json").write_text(json.dumps({"resourceType": "MedicationRequest", "intent": "order",
                                                        "subject": {"display": "x"}, "status": "dispensed"}))
    results = hapi_validate(samples)
    assert set(results) == set(kept) | {"readme-bundle.json", "zz-broken.json"}
    failing = {name: errors(issues) for name, issues in results.items() if errors(issues) and name != "zz-broken.json"}
    assert not failing, failing
    assert errors(results["zz-broken.json"]), "the validator accepted a MedicationRequest without a drug"
