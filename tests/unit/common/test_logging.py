import io
import json

import structlog

from services.common.logging import PatientDataMasker, configure_logging, correlation_id

CCCD = "001203004567"
CARD = "DN4010123456789"


def test_identifier_fields_become_a_stable_keyed_hash():
    masker = PatientDataMasker(b"k1")
    out = masker(None, "info", {"event": "x", "citizen_id": CCCD, "card_code": CARD})
    assert CCCD not in json.dumps(out) and CARD not in json.dumps(out)
    assert out["citizen_id"].startswith("h:")
    again = masker(None, "info", {"patient_id": CCCD})
    assert again["patient_id"] == out["citizen_id"]  # same patient, same mask: lines can be followed
    assert PatientDataMasker(b"k2")(None, "info", {"patient_id": CCCD})["patient_id"] != out["citizen_id"]


def test_names_are_dropped_and_nested_values_masked():
    masker = PatientDataMasker(b"k")
    out = masker(None, "info", {"patient_name": "Nguyễn Văn An",
                                "request": {"patient": {"citizen_id": CCCD}, "guardian_name": "Trần Thị B"}})
    text = json.dumps(out, ensure_ascii=False)
    assert "Nguyễn" not in text and "Trần" not in text and CCCD not in text
    assert out["patient_name"] == "***"


def test_identifiers_inside_free_text_are_masked_but_other_numbers_stay():
    masker = PatientDataMasker(b"k")
    out = masker(None, "info", {"event": f"lookup failed for {CCCD} card {CARD} qty 30 code 01234ab3k9x2-c"})
    assert CCCD not in out["event"] and CARD not in out["event"]
    assert "qty 30" in out["event"] and "01234ab3k9x2-c" in out["event"]


def test_json_lines_carry_service_correlation_id_and_no_patient_data():
    stream = io.StringIO()
    configure_logging("prescribing", fmt="json", mask_key=b"k", stream=stream)
    token = correlation_id.set("cid-123")
    try:
        structlog.get_logger("t").info("prescription.issued", code="01234ab3k9x2-c", citizen_id=CCCD)
    finally:
        correlation_id.reset(token)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "prescription.issued"
    assert line["correlation_id"] == "cid-123"
    assert line["service"] == "prescribing"
    assert line["code"] == "01234ab3k9x2-c"
    assert line["citizen_id"].startswith("h:")


def test_free_text_masks_cards_in_either_case_passports_and_tokens_but_not_timestamps():
    masker = PatientDataMasker(b"k")
    text = (f"card {CARD.lower()} and {CARD}, passport B1234567, ssn 0123456789, cccd {CCCD}, "
            f"token eprx_fedcba9876543210_{'s' * 43}, at 1764519000.123456, drug N02BE01-500T, pharmacy PH0001")
    out = masker(None, "warning", {"event": text})["event"]
    for secret in (CARD, CARD.lower(), "B1234567", "0123456789", CCCD, "s" * 43):
        assert secret not in out, secret
    assert "eprx_fedcba9876543210_***" in out                         # the key id stays: which credential
    assert "1764519000.123456" in out and "N02BE01-500T" in out and "PH0001" in out
    assert out.count(masker.mask_identifier(CARD)) == 2                 # either case: the same patient


def test_standard_library_lines_are_masked_like_ours():
    import logging
    stream = io.StringIO()
    configure_logging("t", fmt="json", level="info", mask_key=b"k", stream=stream)
    logging.getLogger("aiokafka").warning("member %s with card %s", CCCD, CARD)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert CCCD not in line["event"] and CARD not in line["event"]
    assert line["logger"] == "aiokafka" and line["level"] == "warning" and line["service"] == "t"
