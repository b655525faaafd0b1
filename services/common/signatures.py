"""Prescription signatures: Ed25519 over a canonical encoding of the prescription.

The canonical encoding is the Prescription message with its signature field cleared,
serialised deterministically. The signer keeps private keys in a key store made at first
run (never committed); verifiers read only the public keys file."""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from eprescription.common.v1 import common_pb2
from google.protobuf.message import DecodeError

from services.common.files import write_json_atomically

ALGORITHM = "ed25519"
PRIVATE_FILE = "prescriber-signing-keys.json"
PUBLIC_FILE = "prescriber-public-keys.json"


def canonical_bytes(prescription: common_pb2.Prescription) -> bytes:
    unsigned = common_pb2.Prescription()
    unsigned.CopyFrom(prescription)
    unsigned.ClearField("signature")
    return unsigned.SerializeToString(deterministic=True)


def sign(prescription: common_pb2.Prescription, key_id: str, key: Ed25519PrivateKey) -> None:
    """Signs in place: sets prescription.signature."""
    value = key.sign(canonical_bytes(prescription))
    prescription.signature.CopyFrom(common_pb2.Signature(algorithm=ALGORITHM, key_id=key_id, value=value))


def verify(prescription: common_pb2.Prescription, public_keys: dict[str, Ed25519PublicKey]) -> bool:
    sig = prescription.signature
    key = public_keys.get(sig.key_id)
    if sig.algorithm != ALGORITHM or key is None:
        return False
    try:
        key.verify(sig.value, canonical_bytes(prescription))
    except InvalidSignature:
        return False
    return True



class DocumentVerifier:
    """Verifies serialised prescriptions against the prescribers' public keys.

    A prescription is looked up and sold several times, and its signed bytes never change: the
    answer for the same bytes (by their SHA-256) is remembered, for the most recent
    `remembered` documents (about 100 bytes each). The keys are fixed for the verifier's life,
    so the answer cannot change either. Issue 15's profile: the signature checked on every
    lookup and sale was 5% of the pharmacy service."""

    def __init__(self, public_keys: dict[str, Ed25519PublicKey], remembered: int = 100_000):
        self._keys = public_keys
        self._answers: OrderedDict[bytes, bool] = OrderedDict()
        self._remembered = remembered

    def verify(self, document: bytes) -> bool:
        digest = hashlib.sha256(document).digest()
        answer = self._answers.get(digest)
        if answer is not None:
            self._answers.move_to_end(digest)
            return answer
        answer = self._check(document)
        self._answers[digest] = answer
        if len(self._answers) > self._remembered:
            self._answers.popitem(last=False)
        return answer

    def _check(self, document: bytes) -> bool:
        try:
            prescription = common_pb2.Prescription.FromString(document)
        except DecodeError:
            return False
        return verify(prescription, self._keys)

def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def load_private_keys(directory: Path) -> dict[str, Ed25519PrivateKey]:
    doc = json.loads((directory / PRIVATE_FILE).read_text())
    return {k: Ed25519PrivateKey.from_private_bytes(base64.b64decode(v)) for k, v in doc["keys"].items()}


def load_public_keys(directory: Path) -> dict[str, Ed25519PublicKey]:
    doc = json.loads((directory / PUBLIC_FILE).read_text())
    return {k: Ed25519PublicKey.from_public_bytes(base64.b64decode(v)) for k, v in doc["keys"].items()}


def ensure_keys(directory: Path, key_ids: Iterable[str]) -> list[str]:
    """Adds a key pair for every key id that has none; returns the ids it created."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / PRIVATE_FILE, directory / PUBLIC_FILE
    private = json.loads(private_path.read_text())["keys"] if private_path.exists() else {}
    public = json.loads(public_path.read_text())["keys"] if public_path.exists() else {}
    created = []
    for key_id in key_ids:
        if key_id in private:
            continue
        key = Ed25519PrivateKey.generate()
        private[key_id] = _b64(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
        public[key_id] = _b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
        created.append(key_id)
    if created:
        write_json_atomically(private_path, {"version": 1, "keys": private}, 0o600)
        write_json_atomically(public_path, {"version": 1, "keys": public}, 0o644)
    return created


def main(argv: list[str] | None = None) -> None:
    import csv
    parser = argparse.ArgumentParser(description="Create signing keys for the registered prescribers")
    parser.add_argument("directory", type=Path, help="key store folder (in the run folder)")
    parser.add_argument("prescribers_csv", type=Path)
    args = parser.parse_args(argv)
    with open(args.prescribers_csv, newline="", encoding="utf-8") as f:
        key_ids = [row["key_id"] for row in csv.DictReader(f)]
    created = ensure_keys(args.directory, key_ids)
    print(f"signing keys: {len(created)} created, {len(key_ids) - len(created)} already present")


if __name__ == "__main__":
    main()
