"""What the prescription store reports after a command's script."""
from __future__ import annotations

from dataclasses import dataclass

from services.prescribing.domain.model import Issued


@dataclass(frozen=True)
class Done:
    pass


@dataclass(frozen=True)
class Duplicate:
    """The client request id was used before: its fingerprint and its answer."""
    fingerprint: str
    issued: Issued | None


@dataclass(frozen=True)
class Collision:
    """The drawn code is taken: draw another."""


@dataclass(frozen=True)
class Missing:
    pass


@dataclass(frozen=True)
class InState:
    status: str


@dataclass(frozen=True)
class AlreadyCancelled:
    pass


Outcome = Done | Duplicate | Collision | Missing | InState | AlreadyCancelled
