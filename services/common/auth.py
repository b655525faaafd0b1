"""Caller credentials: bearer tokens, stored only as hashes, each bound to a role and an
identity. Tokens are 256-bit random secrets, so a plain SHA-256 is enough to store them
(no password stretching needed) and lookup is by the token's public key id."""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Iterable

from services.common.files import write_json_atomically

TOKEN_PREFIX = "eprx"


class Role(StrEnum):
    PRESCRIBER = "prescriber"
    PHARMACY = "pharmacy"
    INSURER = "insurer"
    OPERATOR = "operator"
    SERVICE = "service"  # one platform service calling another


class Scope(StrEnum):
    SUBSTITUTE = "substitute"  # a pharmacist who may substitute a drug


@dataclass(frozen=True)
class Caller:
    key_id: str
    role: Role
    identity: str  # facility code, pharmacy code, agency or service name
    name: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)

    def may(self, scope: Scope) -> bool:
        return scope.value in self.scopes


class AuthenticationError(Exception):
    """The credential is missing, malformed or unknown."""


@dataclass(frozen=True)
class StoredCredential:
    key_id: str
    secret_sha256: str
    role: Role
    identity: str
    name: str
    scopes: frozenset[str]

    def to_json(self) -> dict:
        return {"key_id": self.key_id, "secret_sha256": self.secret_sha256, "role": self.role.value,
                "identity": self.identity, "name": self.name, "scopes": sorted(self.scopes)}

    @classmethod
    def from_json(cls, row: dict) -> "StoredCredential":
        return cls(key_id=row["key_id"], secret_sha256=row["secret_sha256"], role=Role(row["role"]),
                   identity=row["identity"], name=row.get("name", ""),
                   scopes=frozenset(row.get("scopes", ())))


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        raise AuthenticationError("malformed credential")
    return parts[1], parts[2]


def new_credential(role: Role, identity: str, name: str = "",
                   scopes: Iterable[Scope] = ()) -> tuple[str, StoredCredential]:
    """Returns the token (shown once, to its holder) and what the server stores."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    stored = StoredCredential(key_id, _hash(secret), role, identity, name,
                              frozenset(s.value for s in scopes))
    return f"{TOKEN_PREFIX}_{key_id}_{secret}", stored


class Authenticator:
    def __init__(self, credentials: Iterable[StoredCredential]):
        self._by_key = {c.key_id: c for c in credentials}

    @classmethod
    def from_file(cls, path: Path) -> "Authenticator":
        if not path.exists():
            raise FileNotFoundError(f"credentials file {path} does not exist (run `make credentials`)")
        doc = json.loads(path.read_text())
        return cls(StoredCredential.from_json(row) for row in doc["credentials"])

    def authenticate(self, authorization: str | None) -> Caller:
        if not authorization:
            raise AuthenticationError("missing authorization metadata (expected 'Bearer <token>')")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("authorization must be 'Bearer <token>'")
        key_id, secret = split_token(token.strip())
        stored = self._by_key.get(key_id)
        # Compare even for an unknown key so that timing does not tell which keys exist.
        expected = stored.secret_sha256 if stored else "0" * 64
        if not hmac.compare_digest(expected, _hash(secret)) or stored is None:
            raise AuthenticationError("unknown credential")
        return Caller(stored.key_id, stored.role, stored.identity, stored.name, stored.scopes)


# Demo identities for a laptop run. The facility and pharmacy codes match the demo
# reference data; the secrets are generated on first run, never committed.
DEMO_CALLERS: tuple[tuple[str, Role, str, str, tuple[Scope, ...]], ...] = (
    ("prescriber-hospital-a", Role.PRESCRIBER, "01001", "Demo prescriber, hospital A", ()),
    ("prescriber-hospital-b", Role.PRESCRIBER, "79001", "Demo prescriber, hospital B", ()),
    ("pharmacy-a", Role.PHARMACY, "PH0001", "Demo pharmacy A (pharmacist on duty)", (Scope.SUBSTITUTE,)),
    ("pharmacy-b", Role.PHARMACY, "PH0002", "Demo pharmacy B (sales clerk)", ()),
    ("insurer", Role.INSURER, "BHXH", "Demo insurance agency", ()),
    ("operator", Role.OPERATOR, "ops", "Demo operator", ()),
    ("service-pharmacy", Role.SERVICE, "pharmacy", "The pharmacy service", ()),
)


def write_credentials(directory: Path, callers=DEMO_CALLERS, *, overwrite: bool = False) -> bool:
    """Creates credentials.json (hashes, for servers) and tokens.json (secrets, for clients).
    Returns False and changes nothing when they exist and overwrite is not asked for."""
    directory.mkdir(parents=True, exist_ok=True)
    stored_path, tokens_path = directory / "credentials.json", directory / "tokens.json"
    if stored_path.exists() and tokens_path.exists() and not overwrite:
        return False
    stored, tokens = [], {}
    for label, role, identity, name, scopes in callers:
        token, credential = new_credential(role, identity, name, scopes)
        stored.append(credential.to_json())
        tokens[label] = {"token": token, "role": role.value, "identity": identity}
    write_json_atomically(tokens_path, {"version": 1, "tokens": tokens}, 0o600)
    write_json_atomically(stored_path, {"version": 1, "credentials": stored}, 0o600)
    return True


def load_tokens(path: Path) -> dict[str, str]:
    """label -> token, for demo and test clients."""
    doc = json.loads(path.read_text())
    return {label: row["token"] for label, row in doc["tokens"].items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create the demo credentials of a run folder")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    created = write_credentials(args.directory, overwrite=args.overwrite)
    print(f"credentials {'created' if created else 'already present'} in {args.directory}")


if __name__ == "__main__":
    main()
