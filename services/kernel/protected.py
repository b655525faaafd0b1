"""Who may know a patient's HIV status (Law on HIV/AIDS Prevention art. 8; art. 30 as amended
in 2020; MoH Decision 425 art. 9(5)): the treating team (prescribers of the issuing
facility), Vietnam Social Security for claims, surveillance, the patient and whom the
patient consents to. One rule for every read path: a reader outside that circle sees neither
the patient's identity with a protected diagnosis nor the protected drug lines. Which
diagnoses and drugs are protected is reference data (reference/v1/protected_health.csv)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from services.kernel.icd10 import IcdRange, any_in

PRESCRIBER, PHARMACY, INSURER = "prescriber", "pharmacy", "insurer"


@dataclass(frozen=True)
class ProtectedHealth:
    diagnoses: tuple[IcdRange, ...]
    drug_classes: tuple[str, ...]        # ATC prefixes, protected when prescribed for a protected diagnosis

    def protected_diagnosis(self, codes: Iterable[str]) -> bool:
        return any_in(codes, self.diagnoses)

    def protected_line(self, atc: str, diagnoses: Iterable[str]) -> bool:
        return bool(atc) and atc.upper().startswith(self.drug_classes) and self.protected_diagnosis(diagnoses)


@dataclass(frozen=True)
class Reader:
    """Who reads, for what: every read of a protected record is logged with its purpose."""
    role: str                            # prescriber | pharmacy | insurer | operator | service
    organisation: str                    # the facility or pharmacy code
    purpose: str                         # treatment | dispensing | claims | operations


def may_know(reader: Reader | None, issuing_facility: str) -> bool:
    """Whether `reader` may see a protected record of `issuing_facility`."""
    if reader is None:
        return False
    if reader.role == PRESCRIBER:
        return reader.organisation.lower() == issuing_facility.lower()
    return reader.role == INSURER


# What reference/v1/protected_health.csv holds; the services load the file, tests may use this.
DEFAULT = ProtectedHealth(
    (IcdRange("B20", "B24", "HIV disease"), IcdRange("Z21", "Z21", "asymptomatic HIV infection"),
     IcdRange("O98.7", "O98.7", "HIV disease complicating pregnancy"),
     IcdRange("R75", "R75", "laboratory evidence of HIV"), IcdRange("Z20.6", "Z20.6", "contact with and exposure to HIV"),
     IcdRange("Z71.7", "Z71.7", "HIV counselling")),
    ("J05AE", "J05AF", "J05AG", "J05AR", "J05AX"))
