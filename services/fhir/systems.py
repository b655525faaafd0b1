"""The URIs the facade names things with. VN Core's naming systems (HL7 Vietnam's VN Core IG,
`http://fhir.ehealth.gov.vn/core/sid/...`) where the IG defines one; the project's own
namespace, under PROJECT, where it does not (the prescription code, the practising
certificate, the prescription type...). docs/fhir.md lists them all."""
from __future__ import annotations

VN_CORE = "http://fhir.ehealth.gov.vn/core"
PROJECT = "https://eprescription.vn/fhir"

# Identifiers
NATIONAL_ID = f"{VN_CORE}/sid/national_id"            # căn cước công dân (CCCD), 12 digits
PASSPORT = f"{VN_CORE}/sid/passport_number"
INSURANCE_NUMBER = f"{VN_CORE}/sid/insurance_number"  # the BHYT card code, 15 characters
# VN Core's provider-code naming system (the Ministry's facility code) gives this URI.
FACILITY = f"{VN_CORE}/sid/provider-medical-license-number"
HEALTH_ID = f"{PROJECT}/sid/health-id"
PRESCRIPTION_CODE = f"{PROJECT}/sid/prescription-code"   # the national prescription code
PRACTISING_CERTIFICATE = f"{PROJECT}/sid/practising-certificate"
LINKAGE_CODE = f"{PROJECT}/sid/prescriber-linkage-code"
PHARMACY = f"{PROJECT}/sid/pharmacy-code"
VISIT = f"{PROJECT}/sid/visit"                            # the hospital's encounter id (MA_LK)
DISPENSE = f"{PROJECT}/sid/dispense-id"
CLAIM = f"{PROJECT}/sid/claim-id"
ELIGIBILITY_CHECK = f"{PROJECT}/sid/eligibility-check"
SUBMISSION = f"{PROJECT}/sid/submission"                  # Bundle.identifier: the HIS's request id

# Code systems
MEDICATION = f"{VN_CORE}/CodeSystem/vn-core-medicationCode"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
PRESCRIPTION_TYPE = f"{PROJECT}/CodeSystem/prescription-type"   # c, n, h, y
RULE = f"{PROJECT}/CodeSystem/rule"                             # the platform's refusal and reason codes
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
BODY_WEIGHT = "29463-7"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
PATIENT_SHARE = f"{PROJECT}/CodeSystem/adjudication"             # what the patient pays
PAYEE_TYPE = "http://terminology.hl7.org/CodeSystem/payeetype"
BENEFIT_TYPE = "http://terminology.hl7.org/CodeSystem/benefit-type"
BENEFIT_CATEGORY = "http://terminology.hl7.org/CodeSystem/ex-benefitcategory"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

# Extensions (project)
EXT_AGE_IN_MONTHS = f"{PROJECT}/StructureDefinition/age-in-months"
EXT_NOT_AVAILABLE = f"{PROJECT}/StructureDefinition/not-available-at-facility"
EXT_NOT_AVAILABLE_REASON = f"{PROJECT}/StructureDefinition/not-available-reason"
EXT_BATCH = f"{PROJECT}/StructureDefinition/dispense-batch"
EXT_RETURN_VISIT_DAYS = f"{PROJECT}/StructureDefinition/return-visit-days"
EXT_CANCER_OR_AIDS_PAIN = f"{PROJECT}/StructureDefinition/cancer-or-aids-pain"
EXT_ACUTE = f"{PROJECT}/StructureDefinition/acute"
EXT_TOXIC_HERBS = f"{PROJECT}/StructureDefinition/toxic-herbs"
EXT_NEW_SUPPLY = f"{PROJECT}/StructureDefinition/new-supply"
EXT_OTHER_COSTS = f"{PROJECT}/StructureDefinition/visit-other-costs"
EXT_DISPENSED = f"{PROJECT}/StructureDefinition/dispensed-quantity"
EXT_REMAINING = f"{PROJECT}/StructureDefinition/remaining-quantity"
EXT_UNIT_PRICE = f"{PROJECT}/StructureDefinition/unit-price"
EXT_SIGNATURE_VERIFIED = f"{PROJECT}/StructureDefinition/signature-verified"
