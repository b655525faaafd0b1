from eprescription.common.v1 import common_pb2

from services.common import signatures


def prescription():
    rx = common_pb2.Prescription(code="01001abcdefg-c", facility_code="01001")
    rx.lines.add(line_number=1, drug_code="N02BE01-500T", quantity=20)
    return rx


def test_a_signed_prescription_verifies_and_any_change_breaks_it(tmp_path):
    assert signatures.ensure_keys(tmp_path, ["k1", "k2"]) == ["k1", "k2"]
    assert signatures.ensure_keys(tmp_path, ["k1", "k2", "k3"]) == ["k3"]  # existing keys are kept
    private, public = signatures.load_private_keys(tmp_path), signatures.load_public_keys(tmp_path)
    rx = prescription()
    signatures.sign(rx, "k1", private["k1"])
    assert rx.signature.key_id == "k1" and rx.signature.algorithm == "ed25519"
    assert signatures.verify(rx, public)
    tampered = common_pb2.Prescription()
    tampered.CopyFrom(rx)
    tampered.lines[0].quantity = 200
    assert not signatures.verify(tampered, public)
    other_key = common_pb2.Prescription()
    other_key.CopyFrom(rx)
    other_key.signature.key_id = "k2"
    assert not signatures.verify(other_key, public)
    assert not signatures.verify(prescription(), public)  # unsigned


def test_the_public_file_holds_no_private_key(tmp_path):
    signatures.ensure_keys(tmp_path, ["k1"])
    private_doc = (tmp_path / signatures.PRIVATE_FILE).read_text()
    public_doc = (tmp_path / signatures.PUBLIC_FILE).read_text()
    import json
    secret = json.loads(private_doc)["keys"]["k1"]
    assert secret not in public_doc
    assert (tmp_path / signatures.PRIVATE_FILE).stat().st_mode & 0o077 == 0


def test_a_document_verifier_remembers_answers_by_the_exact_bytes(tmp_path):
    signatures.ensure_keys(tmp_path, ["k1"])
    private, public = signatures.load_private_keys(tmp_path), signatures.load_public_keys(tmp_path)
    rx = prescription()
    signatures.sign(rx, "k1", private["k1"])
    document = rx.SerializeToString(deterministic=True)
    tampered = bytearray(document)
    tampered[document.index(b"N02BE01")] = ord("X")
    checks = []
    verifier = signatures.DocumentVerifier(public, remembered=3)
    real_check = verifier._check
    verifier._check = lambda doc: checks.append(doc) or real_check(doc)
    assert [verifier.verify(document) for _ in range(5)] == [True] * 5
    assert len(checks) == 1                                   # checked once, then remembered
    assert not verifier.verify(bytes(tampered))               # a byte changed: checked, and refused
    assert not verifier.verify(b"not a prescription")
    assert verifier.verify(document) and len(checks) == 3     # still remembered (the three most recent)
    verifier.verify(b"x"), verifier.verify(b"y"), verifier.verify(b"z")   # the bound pushes it out
    assert verifier.verify(document) and len(checks) == 7     # checked again
