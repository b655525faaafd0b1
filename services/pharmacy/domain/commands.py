"""What a pharmacy asks of the service, as the gRPC adapter hands it over."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

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
    invoice_number: str = ""           # the sale's e-invoice

    def fingerprint(self) -> str:
        """The same request sent again has the same fingerprint, whoever sends it."""
        body = [self.code, self.idempotency_key, self.bhyt_card,
                [[l.line_number, l.drug_code, l.quantity, l.unit_price_vnd, l.substitution] for l in self.lines]]
        if self.invoice_number:
            body.append(self.invoice_number)
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()


@dataclass(frozen=True)
class ListDispenses:
    code: str
    reader_role: str                   # pharmacy, prescriber or operator
    reader: str                        # the caller's identity: a pharmacy or facility code


@dataclass(frozen=True)
class ReverseDispense:
    dispense_id: str
    pharmacy: str
    reason: str
