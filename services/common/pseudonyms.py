"""Keyed pseudonyms of patients: HMAC-SHA256 of the identifier under a secret every service of
one deployment shares (made at first start, 0600 under the run folder's secrets,
or EPRX_PSEUDONYM_KEY). The same patient gets the same pseudonym on every topic and in every
service, so alerts, the doctor-shopping detector and the audit trail can follow a patient;
without the key nobody can tell who it is, nor test a guessed citizen ID against it."""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from services.common.files import shared_secret

PREFIX = "p-"


def load_key(run_dir: Path, explicit: str | None = None) -> bytes:
    """EPRX_PSEUDONYM_KEY in a deployment; on a laptop, one made once per run folder."""
    return explicit.encode() if explicit else shared_secret(run_dir / "secrets" / "pseudonym.key")


class Pseudonyms:
    def __init__(self, key: bytes):
        self._key = key

    def of(self, kind: str, value: str) -> str:
        """The pseudonym of an identifier (kind: citizen_id, health_id, passport)."""
        if not value:
            return ""
        digest = hmac.new(self._key, f"{kind}:{value.strip().upper()}".encode(), hashlib.sha256).hexdigest()
        return PREFIX + digest[:32]

    def of_patient(self, identifier) -> str:
        """The pseudonym of a common.v1.PatientIdentifier ("" when it names nobody)."""
        if identifier is None:
            return ""
        kind = identifier.WhichOneof("kind")
        return self.of(kind, getattr(identifier, kind)) if kind else ""
