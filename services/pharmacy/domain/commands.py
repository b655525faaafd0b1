"""What a pharmacy asks of the service, as the gRPC adapter hands it over."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from services.pharmacy.domain.model import SoldLine


@dataclass(frozen=True)
class LookupPrescription:
    code: str


@dataclass(frozen=True)
class DispenseMedication:
    code: str
    pharmacy: str
    idempotency_key: str
    bhyt_card: str | None              # None: the patient pays the whole price
    lines: tuple[SoldLine, ...]
    may_substitute: bool = False       # the caller is a pharmacist

    def fingerprint(self) -> str:
        """The same request sent again has the same fingerprint, whoever sends it."""
        body = {"code": self.code, "key": self.idempotency_key, "card": self.bhyt_card,
                "lines": [asdict(line) for line in self.lines]}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ReverseDispense:
    dispense_id: str
    pharmacy: str
    reason: str
