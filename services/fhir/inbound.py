"""A hospital's FHIR R4 prescription Bundle read into the same IssuePrescriptionRequest the
gRPC API takes, so it meets exactly the same rules. Only the shape is checked here (types,
cardinality, known systems); every rule of content is the prescribing service's. While
reading, each request field remembers the FHIR element it came from, so a refusal naming
`draft.lines[1].quantity` can name `Bundle.entry[4].resource.dispenseRequest.quantity.value`.

The mapping, element by element, is in docs/fhir.md."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from eprescription.common.v1 import common_pb2
from eprescription.prescribing.v1 import prescribing_pb2

from services.common import dates
from services.common.national_codes import sex_from_fhir
from services.fhir import systems as S
from services.kernel.calendar import months_between

MAX_ENTRIES = 120          # 50 lines, their conditions and the people: more is not a prescription
CHILD_MONTHS = 72
INT32 = 2**31 - 1          # FHIR integer, and the request's int32 fields
INT64 = 2**62              # money: far beyond any real amount, inside int64


def _finite(value: Decimal) -> bool:
    """A number small enough to handle: no 1e999999999 turned into a billion digits."""
    return value.is_finite() and -18 <= value.adjusted() <= 18
TYPES = {"c": common_pb2.PRESCRIPTION_TYPE_ORDINARY, "n": common_pb2.PRESCRIPTION_TYPE_NARCOTIC,
         "h": common_pb2.PRESCRIPTION_TYPE_PSYCHOTROPIC, "y": common_pb2.PRESCRIPTION_TYPE_TRADITIONAL}
BUNDLE_TYPES = frozenset({"collection", "transaction", "message", "document"})
SUPPORTED = frozenset({"Patient", "Practitioner", "Organization", "MedicationRequest", "Condition", "Encounter",
                       "AllergyIntolerance", "Observation", "RelatedPerson", "DetectedIssue"})


@dataclass(frozen=True)
class Issue:
    code: str                # the FHIR issue type: structure, required, value, not-supported, invariant
    message: str
    expression: str
    rule: str = ""


class BundleRefused(Exception):
    def __init__(self, issues: list[Issue]):
        self.issues = issues
        super().__init__("; ".join(f"{i.expression}: {i.message}" for i in issues))


@dataclass
class Submission:
    request: prescribing_pb2.IssuePrescriptionRequest
    origin: dict[str, str] = field(default_factory=dict)   # request field path -> FHIR expression
    drugs: dict[str, str] = field(default_factory=dict)    # drug code -> its MedicationRequest's expression

    def expression_of(self, request_field: str) -> str:
        """The FHIR element a refused request field came from: the field itself, else the
        nearest enclosing one that has an origin, else the Bundle."""
        path = request_field
        while path:
            if path in self.origin:
                return self.origin[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return "Bundle"


class _Reader:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def fail(self, where: str, message: str, code: str = "structure") -> None:
        if len(self.issues) < 20:
            self.issues.append(Issue(code, message, where))

    def obj(self, parent: dict, key: str, where: str, required: bool = False) -> dict | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.fail(f"{where}.{key}", f"{key} is required", "required")
            return None
        if not isinstance(value, dict):
            self.fail(f"{where}.{key}", f"{key} must be an object")
            return None
        return value

    def array(self, parent: dict, key: str, where: str) -> list:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"{where}.{key}", f"{key} must be an array")
            return []
        return value

    def text(self, parent: dict, key: str, where: str) -> str:
        value = parent.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(f"{where}.{key}", f"{key} must be a string")
            return ""
        return value

    def integer(self, parent: dict, key: str, where: str, limit: int = INT32) -> int | None:
        value = parent.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            self.fail(f"{where}.{key}", f"{key} must be a whole number", "value")
            return None
        if isinstance(value, Decimal) and not _finite(value) or not -limit <= value <= limit:
            self.fail(f"{where}.{key}", f"{key} is out of range (at most {limit})", "value")
            return None
        if value != int(value):
            self.fail(f"{where}.{key}", f"{key} must be a whole number", "value")
            return None
        return int(value)

    def decimal(self, parent: dict, key: str, where: str) -> Decimal | None:
        value = parent.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            self.fail(f"{where}.{key}", f"{key} must be a number", "value")
            return None
        if not _finite(Decimal(value)):
            self.fail(f"{where}.{key}", f"{key} is out of range", "value")
            return None
        return Decimal(value)

    def day(self, parent: dict, key: str, where: str) -> date | None:
        raw = self.text(parent, key, where)
        if not raw:
            return None
        try:
            if len(raw) != 10:
                raise ValueError
            return date.fromisoformat(raw)
        except ValueError:
            self.fail(f"{where}.{key}", f"{key} must be a full date, YYYY-MM-DD", "value")
            return None

    def identifiers(self, resource: dict, where: str) -> dict[str, tuple[str, str]]:
        """system -> (value, its expression), the first of each system."""
        found: dict[str, tuple[str, str]] = {}
        for i, ident in enumerate(self.array(resource, "identifier", where)):
            at = f"{where}.identifier[{i}]"
            if not isinstance(ident, dict):
                self.fail(at, "an identifier must be an object")
                continue
            system, value = self.text(ident, "system", at), self.text(ident, "value", at)
            if system and value and system not in found:
                found[system] = (value, f"{at}.value")
        return found

    def extension(self, resource: dict, url: str, kind: str, where: str):
        """The value of the resource's first extension with this url (valueBoolean, valueInteger,
        valueString, valueMoney), and its expression."""
        for i, ext in enumerate(self.array(resource, "extension", where)):
            if isinstance(ext, dict) and ext.get("url") == url:
                at = f"{where}.extension[{i}]"
                key = f"value{kind}"
                value = ext.get(key)
                if kind == "Integer":
                    number = self.integer(ext, key, at)
                    return (number, f"{at}.{key}") if number is not None else (None, at)
                expected = {"Boolean": bool, "String": str, "Money": dict}[kind]
                if not isinstance(value, expected):
                    self.fail(f"{at}.{key}", f"this extension takes {key}", "value")
                    return None, at
                return value, f"{at}.{key}"
        return None, ""


def _coding(reader: _Reader, concept: dict | None, system: str, where: str) -> tuple[str, str, str]:
    """(code, display, expression) of the concept's coding in `system`; ("", text, "") without one."""
    if not concept:
        return "", "", ""
    for i, coding in enumerate(reader.array(concept, "coding", where)):
        if isinstance(coding, dict) and coding.get("system") == system:
            at = f"{where}.coding[{i}]"
            return reader.text(coding, "code", at), reader.text(coding, "display", at), f"{at}.code"
    return "", reader.text(concept, "text", where), ""


def _human_name(reader: _Reader, resource: dict, where: str) -> tuple[str, str]:
    names = reader.array(resource, "name", where)
    if not names or not isinstance(names[0], dict):
        return "", f"{where}.name"
    name, at = names[0], f"{where}.name[0]"
    text = reader.text(name, "text", at)
    if not text:   # Vietnamese order: family name, then given names
        given = [g for g in reader.array(name, "given", at) if isinstance(g, str)]
        text = " ".join([reader.text(name, "family", at), *given]).strip()
    return text, at


def read_bundle(bundle: object, today: date) -> Submission:
    """Raises BundleRefused with every shape problem found (up to 20)."""
    r = _Reader()
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BundleRefused([Issue("structure", "the body must be a FHIR Bundle resource", "Bundle")])
    if bundle.get("type") not in BUNDLE_TYPES:
        r.fail("Bundle.type", f"type must be one of {', '.join(sorted(BUNDLE_TYPES))}", "value")
    entries = r.array(bundle, "entry", "Bundle")
    if len(entries) > MAX_ENTRIES:
        raise BundleRefused([Issue("too-costly", f"at most {MAX_ENTRIES} entries", "Bundle.entry")])
    by_type: dict[str, list[tuple[dict, str]]] = {}
    for i, entry in enumerate(entries):
        at = f"Bundle.entry[{i}]"
        resource = r.obj(entry, "resource", at, required=True) if isinstance(entry, dict) else None
        if resource is None:
            if not isinstance(entry, dict):
                r.fail(at, "an entry must be an object")
            continue
        kind = resource.get("resourceType")
        if kind not in SUPPORTED:
            r.fail(f"{at}.resource", f"a prescription Bundle does not carry {kind!r} resources "
                                     f"(it takes {', '.join(sorted(SUPPORTED))})", "not-supported")
            continue
        by_type.setdefault(kind, []).append((resource, f"{at}.resource"))

    sub = Submission(prescribing_pb2.IssuePrescriptionRequest())
    request, draft = sub.request, sub.request.draft
    identifier = r.obj(bundle, "identifier", "Bundle")
    if identifier is not None:
        request.client_request_id = r.text(identifier, "value", "Bundle.identifier")
    sub.origin["client_request_id"] = "Bundle.identifier.value"

    def single(kind: str) -> tuple[dict, str] | None:
        found = by_type.get(kind, [])
        if len(found) != 1:
            r.fail("Bundle.entry", f"a prescription Bundle has exactly one {kind} ({len(found)} given)", "required")
            return None
        return found[0]

    patient = single("Patient")
    if patient is not None:
        _read_patient(r, sub, *patient, today, by_type)
    practitioner = single("Practitioner")
    if practitioner is not None:
        resource, at = practitioner
        ids = r.identifiers(resource, at)
        for system, target in ((S.PRACTISING_CERTIFICATE, "certificate_number"), (S.LINKAGE_CODE, "linkage_code")):
            if system in ids:
                setattr(draft.prescriber, target, ids[system][0])
                sub.origin[f"draft.prescriber.{target}"] = ids[system][1]
        draft.prescriber.name, sub.origin["draft.prescriber.name"] = _human_name(r, resource, at)
        sub.origin["draft.prescriber"] = at
    organization = single("Organization")
    if organization is not None:
        resource, at = organization
        ids = r.identifiers(resource, at)
        if S.FACILITY in ids:
            draft.prescriber.facility_code, sub.origin["draft.prescriber.facility_code"] = ids[S.FACILITY]
        else:
            r.fail(f"{at}.identifier", f"the facility's code is an identifier with system {S.FACILITY}", "required")
    for resource, at in by_type.get("Condition", []):
        _add_diagnosis(r, sub, r.obj(resource, "code", at, required=True), f"{at}.code")
    encounters = by_type.get("Encounter", [])
    if len(encounters) > 1:
        r.fail("Bundle.entry", "a prescription belongs to one Encounter", "invariant")
    for resource, at in encounters[:1]:
        ids = r.identifiers(resource, at)
        draft.encounter.id, sub.origin["draft.encounter.id"] = ids.get(S.VISIT, ("", f"{at}.identifier"))
        money, where = r.extension(resource, S.EXT_OTHER_COSTS, "Money", at)
        if money is not None:
            draft.encounter.other_costs_vnd = _money(r, money, where) or 0
            sub.origin["draft.encounter.other_costs_vnd"] = where
        sub.origin["draft.encounter"] = at
    for resource, at in by_type.get("DetectedIssue", [])[:1]:
        for i, mitigation in enumerate(r.array(resource, "mitigation", at)):
            action = r.obj(mitigation, "action", f"{at}.mitigation[{i}]") if isinstance(mitigation, dict) else None
            if action and not request.override_reason:
                request.override_reason = r.text(action, "text", f"{at}.mitigation[{i}].action")
                sub.origin["override_reason"] = f"{at}.mitigation[{i}].action.text"
    orders = by_type.get("MedicationRequest", [])
    if not orders:
        r.fail("Bundle.entry", "a prescription Bundle has one MedicationRequest per drug line", "required")
    for number, (resource, at) in enumerate(orders, start=1):
        _read_order(r, sub, resource, at, number)
    sub.origin.setdefault("draft.lines", "Bundle.entry")
    sub.origin.setdefault("draft.diagnoses", "Bundle.entry")
    if r.issues:
        raise BundleRefused(r.issues)
    return sub


def _read_patient(r: _Reader, sub: Submission, resource: dict, at: str, today: date, by_type: dict) -> None:
    p, origin = sub.request.draft.patient, sub.origin
    origin["draft.patient"] = at
    ids = r.identifiers(resource, at)
    origin["draft.patient.identifier"] = f"{at}.identifier"
    for system, kind in ((S.NATIONAL_ID, "citizen_id"), (S.HEALTH_ID, "health_id"), (S.PASSPORT, "passport")):
        if system in ids:
            setattr(p.identifier, kind, ids[system][0])
            origin[f"draft.patient.identifier.{kind}"] = ids[system][1]
            break
    if S.INSURANCE_NUMBER in ids:
        p.bhyt_card, origin["draft.patient.bhyt_card"] = ids[S.INSURANCE_NUMBER]
    p.name, origin["draft.patient.name"] = _human_name(r, resource, at)
    born = r.day(resource, "birthDate", at)
    origin["draft.patient.date_of_birth"] = f"{at}.birthDate"
    if born is not None:
        p.date_of_birth.CopyFrom(dates.to_proto(born))
    gender = r.text(resource, "gender", at)
    origin["draft.patient.sex"] = f"{at}.gender"
    if gender:
        sex = sex_from_fhir(gender)
        if sex is None:
            r.fail(f"{at}.gender", "gender is male, female, other or unknown", "code-invalid")
        else:
            p.sex = sex
    addresses = r.array(resource, "address", at)
    origin["draft.patient.address"] = f"{at}.address"
    if addresses and isinstance(addresses[0], dict):
        a = addresses[0]
        p.address = r.text(a, "text", f"{at}.address[0]") or ", ".join(
            x for x in [*(l for l in r.array(a, "line", f"{at}.address[0]") if isinstance(l, str)),
                        r.text(a, "district", f"{at}.address[0]"), r.text(a, "city", f"{at}.address[0]")] if x)
    months, where = r.extension(resource, S.EXT_AGE_IN_MONTHS, "Integer", at)
    origin["draft.patient.age_in_months"] = where or f"{at}.birthDate"
    if months is not None:
        p.age_in_months = months
    elif born is not None and born <= today and months_between(born, today) < CHILD_MONTHS:
        p.age_in_months = months_between(born, today)   # a child's age on the day, as the rules count it
    for resource_w, at_w in by_type.get("Observation", []):
        grams = _body_weight(r, resource_w, at_w)
        if grams is not None:
            p.weight_grams, origin["draft.patient.weight_grams"] = grams, f"{at_w}.valueQuantity"
    origin.setdefault("draft.patient.weight_grams", at)
    guardians = by_type.get("RelatedPerson", [])
    origin["draft.patient.guardian"] = guardians[0][1] if guardians else at
    for resource_g, at_g in guardians[:1]:
        g = p.guardian
        g.name, origin["draft.patient.guardian.name"] = _human_name(r, resource_g, at_g)
        gids = r.identifiers(resource_g, at_g)
        for system, kind in ((S.NATIONAL_ID, "citizen_id"), (S.HEALTH_ID, "health_id"), (S.PASSPORT, "passport")):
            if system in gids:
                setattr(g.identifier, kind, gids[system][0])
                origin[f"draft.patient.guardian.identifier.{kind}"] = gids[system][1]
                break
        relations = r.array(resource_g, "relationship", at_g)
        if relations and isinstance(relations[0], dict):
            g.relationship = r.text(relations[0], "text", f"{at_g}.relationship[0]") or _first_code(relations[0])
    for i, (resource_a, at_a) in enumerate(by_type.get("AllergyIntolerance", [])):
        code = r.obj(resource_a, "code", at_a, required=True)
        if code is not None:
            text = r.text(code, "text", f"{at_a}.code") or _first_display(code)
            if text:
                p.allergies.append(text)
                origin[f"draft.patient.allergies[{len(p.allergies) - 1}]"] = f"{at_a}.code"


def _first_code(concept: dict) -> str:
    codings = concept.get("coding") if isinstance(concept.get("coding"), list) else []
    return next((c["code"] for c in codings if isinstance(c, dict) and isinstance(c.get("code"), str)), "")


def _first_display(concept: dict) -> str:
    codings = concept.get("coding") if isinstance(concept.get("coding"), list) else []
    return next((c["display"] for c in codings if isinstance(c, dict) and isinstance(c.get("display"), str)), "")


def _body_weight(r: _Reader, resource: dict, at: str) -> int | None:
    code, _, _ = _coding(r, r.obj(resource, "code", at), S.LOINC, f"{at}.code")
    if code != S.BODY_WEIGHT:
        r.fail(f"{at}.code", f"the only Observation a prescription takes is body weight (LOINC {S.BODY_WEIGHT})",
               "not-supported")
        return None
    quantity = r.obj(resource, "valueQuantity", at, required=True)
    if quantity is None:
        return None
    value, unit = r.decimal(quantity, "value", f"{at}.valueQuantity"), quantity.get("code") or quantity.get("unit")
    if value is None or unit not in ("kg", "g"):
        r.fail(f"{at}.valueQuantity", "body weight is a value in kg or g (UCUM)", "value")
        return None
    grams = value * 1000 if unit == "kg" else value
    return int(grams.to_integral_value()) if 0 < grams < 10**7 else None


def _add_diagnosis(r: _Reader, sub: Submission, concept: dict | None, at: str) -> None:
    if concept is None:
        return
    code, display, where = _coding(r, concept, S.ICD10, at)
    if not code:
        r.fail(at, f"a diagnosis is an ICD-10 code (system {S.ICD10})", "required")
        return
    draft = sub.request.draft
    if any(d.icd10 == code for d in draft.diagnoses):
        return
    index = len(draft.diagnoses)
    draft.diagnoses.add(icd10=code, text=r.text(concept, "text", at) or display)
    sub.origin[f"draft.diagnoses[{index}]"] = at
    sub.origin[f"draft.diagnoses[{index}].icd10"] = where
    sub.origin[f"draft.diagnoses[{index}].text"] = f"{at}.text"


def _money(r: _Reader, money: dict, where: str) -> int | None:
    value = r.integer(money, "value", where, limit=INT64)
    if money.get("currency", "VND") != "VND":
        r.fail(f"{where}.currency", "amounts are in VND (whole dong)", "value")
    return value


def _read_order(r: _Reader, sub: Submission, resource: dict, at: str, number: int) -> None:
    draft, origin = sub.request.draft, sub.origin
    index = number - 1
    f = f"draft.lines[{index}]"
    line = draft.lines.add(line_number=number)
    origin[f] = at
    status, intent = resource.get("status"), resource.get("intent")
    if status not in ("active", "draft"):
        r.fail(f"{at}.status", "a new prescription's MedicationRequest is active (or draft)", "value")
    if intent != "order":
        r.fail(f"{at}.intent", "intent is order", "value")
    categories = r.array(resource, "category", at)
    for i, category in enumerate(categories):
        code, _, where = _coding(r, category if isinstance(category, dict) else None, S.PRESCRIPTION_TYPE,
                                 f"{at}.category[{i}]")
        if code:
            if code not in TYPES:
                r.fail(where, "the prescription type is c, n, h or y", "code-invalid")
            elif draft.type and draft.type != TYPES[code]:
                r.fail(where, "every MedicationRequest of a prescription has the same type", "invariant")
            else:
                draft.type = TYPES[code]
                origin.setdefault("draft.type", where)
    origin.setdefault("draft.type", f"{at}.category")
    if "medicationReference" in resource:
        r.fail(f"{at}.medicationReference", "name the drug with medicationCodeableConcept", "not-supported")
    medication = r.obj(resource, "medicationCodeableConcept", at, required="medicationReference" not in resource)
    code, _, where = _coding(r, medication, S.MEDICATION, f"{at}.medicationCodeableConcept")
    if medication is not None and not code:
        r.fail(f"{at}.medicationCodeableConcept", f"the drug's code is a coding in {S.MEDICATION}", "required")
    line.drug_code = code
    origin[f"{f}.drug_code"] = where or f"{at}.medicationCodeableConcept"
    sub.drugs.setdefault(code, f"{at}.medicationCodeableConcept")
    for i, reason in enumerate(r.array(resource, "reasonCode", at)):
        _add_diagnosis(r, sub, reason if isinstance(reason, dict) else None, f"{at}.reasonCode[{i}]")
    dispense = r.obj(resource, "dispenseRequest", at, required=True) or {}
    quantity = r.obj(dispense, "quantity", f"{at}.dispenseRequest", required=bool(dispense)) or {}
    line.quantity = r.integer(quantity, "value", f"{at}.dispenseRequest.quantity") or 0
    origin[f"{f}.quantity"] = f"{at}.dispenseRequest.quantity.value"
    dosages = r.array(resource, "dosageInstruction", at)
    if len(dosages) != 1 or not isinstance(dosages[0], dict):
        r.fail(f"{at}.dosageInstruction", "one dosageInstruction per line: dose, times a day, days", "required")
        dosage, d_at = {}, f"{at}.dosageInstruction"
    else:
        dosage, d_at = dosages[0], f"{at}.dosageInstruction[0]"
    line.directions = r.text(dosage, "text", d_at) or r.text(dosage, "patientInstruction", d_at)
    origin[f"{f}.directions"] = f"{d_at}.text"
    route = r.obj(dosage, "route", d_at)
    if route:
        line.route = r.text(route, "text", f"{d_at}.route") or _first_display(route)
    rates = r.array(dosage, "doseAndRate", d_at)
    dose = r.obj(rates[0], "doseQuantity", f"{d_at}.doseAndRate[0]") if rates and isinstance(rates[0], dict) else None
    origin[f"{f}.dose_per_administration"] = f"{d_at}.doseAndRate[0].doseQuantity.value"
    if dose is not None:
        value = r.decimal(dose, "value", f"{d_at}.doseAndRate[0].doseQuantity")
        line.dose_per_administration = "" if value is None else _plain(value)
    repeat = r.obj(r.obj(dosage, "timing", d_at) or {}, "repeat", f"{d_at}.timing") or {}
    w = f"{d_at}.timing.repeat"
    frequency, period = r.integer(repeat, "frequency", w), r.decimal(repeat, "period", w)
    unit = repeat.get("periodUnit")
    origin[f"{f}.administrations_per_day"] = f"{w}.frequency"
    if frequency is not None:
        per_day = _per_day(frequency, period if period is not None else Decimal(1), unit)
        if per_day is None:
            r.fail(w, "times a day: frequency per period of 1 d, or per a whole divisor of 24 h", "value")
        else:
            line.administrations_per_day = per_day
    bounds = r.obj(repeat, "boundsDuration", w)
    supply = r.obj(dispense, "expectedSupplyDuration", f"{at}.dispenseRequest")
    days_from, days_at = (bounds, f"{w}.boundsDuration") if bounds else (supply, f"{at}.dispenseRequest.expectedSupplyDuration")
    origin[f"{f}.days"] = f"{days_at}.value"
    if days_from:
        days = r.integer(days_from, "value", days_at)
        if (days_from.get("code") or days_from.get("unit")) not in ("d", "day", "days"):
            r.fail(f"{days_at}.code", "the duration is in days (UCUM d)", "value")
        line.days = days if days is not None and 0 <= days <= 10_000 else 0
    flag, where = r.extension(resource, S.EXT_NOT_AVAILABLE, "Boolean", at)
    if flag is not None:
        line.not_available_at_facility, origin[f"{f}.not_available_at_facility"] = flag, where
    reason, where = r.extension(resource, S.EXT_NOT_AVAILABLE_REASON, "String", at)
    if reason is not None:
        line.not_available_reason, origin[f"{f}.not_available_reason"] = reason, where
    batch, where = r.extension(resource, S.EXT_BATCH, "Integer", at)
    if batch is not None:
        line.batch_number, origin[f"{f}.batch_number"] = batch, where
        _add_batch(r, sub, batch, dispense, f"{at}.dispenseRequest")
    if number == 1:
        _prescription_level(r, sub, resource, at)


def _prescription_level(r: _Reader, sub: Submission, resource: dict, at: str) -> None:
    """What belongs to the whole prescription rides on its first MedicationRequest."""
    draft, origin = sub.request.draft, sub.origin
    notes = r.array(resource, "note", at)
    if notes and isinstance(notes[0], dict):
        draft.advice, origin["draft.advice"] = r.text(notes[0], "text", f"{at}.note[0]"), f"{at}.note[0].text"
    for url, target in ((S.EXT_CANCER_OR_AIDS_PAIN, "cancer_or_aids_pain"), (S.EXT_ACUTE, "acute"),
                        (S.EXT_TOXIC_HERBS, "toxic_herbs")):
        flag, where = r.extension(resource, url, "Boolean", at)
        if flag is not None:
            setattr(draft, target, flag)
            origin[f"draft.{target}"] = where
    days, where = r.extension(resource, S.EXT_RETURN_VISIT_DAYS, "Integer", at)
    if days is not None:
        draft.return_visit_days, origin["draft.return_visit_days"] = days, where
    origin.setdefault("draft.batches", f"{at}.dispenseRequest.validityPeriod")


def _add_batch(r: _Reader, sub: Submission, number: int, dispense: dict, at: str) -> None:
    """A narcotic batch's dates are its lines' dispenseRequest.validityPeriod."""
    period = r.obj(dispense, "validityPeriod", at, required=True)
    if period is None:
        return
    start, end = (_day_of(r, period, key, f"{at}.validityPeriod") for key in ("start", "end"))
    draft = sub.request.draft
    if any(b.number == number for b in draft.batches):
        return
    batch = draft.batches.add(number=number)
    if start:
        batch.start.CopyFrom(dates.to_proto(start))
    if end:
        batch.end.CopyFrom(dates.to_proto(end))
    sub.origin[f"draft.batches[{len(draft.batches) - 1}]"] = f"{at}.validityPeriod"


def _day_of(r: _Reader, period: dict, key: str, at: str) -> date | None:
    raw = r.text(period, key, at)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw) if len(raw) == 10 else datetime.fromisoformat(raw).date()
    except ValueError:
        r.fail(f"{at}.{key}", f"{key} must be a date or dateTime", "value")
        return None


def _per_day(frequency: int, period: Decimal, unit) -> int | None:
    if frequency < 1 or period <= 0:
        return None
    per_day = None
    if unit == "d" and period == 1:
        per_day = frequency
    elif unit == "h" and period == int(period) and 24 % int(period) == 0:
        per_day = frequency * (24 // int(period))
    return per_day if per_day is not None and per_day <= INT32 else None


def _plain(value: Decimal) -> str:
    """A decimal as the plain text the dose field takes (1.5, never 1.5E+0)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
