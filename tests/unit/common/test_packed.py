"""Packed JSON documents (services/common/packed.py): what goes in comes out, plain JSON written
before packing still reads, an unknown dictionary is refused rather than misread, and a real
claim shrinks to about a quarter."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from services.common.packed import pack, unpack

CLAIM = {"adjudicated_at": "2026-12-01T03:34:42.967985+00:00", "adjusted_by": "", "benefit_percent": 100,
         "card_code": "DN4016185864144", "claim_id": "c-8fc01da115c3faa3db020c3d32c13bf6", "copay_exempt": True,
         "dispense_id": "d-01001ruzmnx7-c-820bf454d6583e51", "dispensed_on": "2026-12-01", "fund_total_vnd": 79000,
         "invoice_number": "", "lines": [{"copay_vnd": 0, "drug_code": "C10AA07-10T", "fund_vnd": 79000,
                                          "insured_vnd": 79000, "line_number": 1, "outcome": "approved",
                                          "patient_vnd": 0, "payment_ratio": 100, "quantity": 5, "reason": "OK",
                                          "reference_price_vnd": 15800, "unit_price_vnd": 15800}],
         "member_id": "6185864144", "outcome": "approved", "patient_total_vnd": 0, "payee": "facility",
         "pharmacy_code": "PH0001", "prescription_code": "01001ruzmnx7-c", "reason": "", "revision": 0,
         "visit_cost_vnd": 158000, "visit_key": "rx:01001ruzmnx7-c"}

documents = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                         lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                                      max_size=5), max_leaves=30)


@settings(max_examples=300)
@given(documents)
def test_what_is_packed_unpacks_the_same(document):
    assert unpack(pack(document)) == document


def test_a_claim_packs_to_about_a_quarter_of_its_json():
    plain = json.dumps(CLAIM, sort_keys=True, ensure_ascii=False).encode()
    packed = pack(CLAIM)
    assert len(packed) * 3 < len(plain), (len(packed), len(plain))
    assert unpack(packed) == CLAIM


def test_plain_json_written_before_still_reads():
    assert unpack(json.dumps(CLAIM).encode()) == CLAIM
    assert unpack(json.dumps([1, "a"])) == [1, "a"]


def test_an_unknown_dictionary_is_refused_not_misread():
    with pytest.raises(ValueError, match="unknown dictionary"):
        unpack(bytes((200,)) + pack(CLAIM)[1:])
