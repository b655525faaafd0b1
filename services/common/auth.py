"""Caller credentials: bearer tokens, stored only as hashes, each bound to a role and an
identity, each with an expiry. Tokens are 256-bit random secrets, so a plain SHA-256 is
enough to store them (no password stretching needed) and lookup is by the token's public key
id. Servers re-read the credentials file when it changes (checked at most once a second) or
on SIGHUP, so a revoked credential stops working within seconds, without a restart:

    python -m services.common.auth DIR                       # the demo credentials, at first start
    python -m services.common.auth revoke DIR KEY_ID|LABEL   # remove a credential
    python -m services.common.auth list DIR                  # key ids, roles, identities, expiry
"""
from __future__ import annotations

import argparse
import hashlib
import time
from datetime import datetime, timedelta, timezone
import hmac
import json
import os
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
    expires_at: datetime | None = None   # None: a credential made before expiry existed; refused

    def to_json(self) -> dict:
        return {"key_id": self.key_id, "secret_sha256": self.secret_sha256, "role": self.role.value,
                "identity": self.identity, "name": self.name, "scopes": sorted(self.scopes),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None}

    @classmethod
    def from_json(cls, row: dict) -> "StoredCredential":
        expires = row.get("expires_at")
        return cls(key_id=row["key_id"], secret_sha256=row["secret_sha256"], role=Role(row["role"]),
                   identity=row["identity"], name=row.get("name", ""),
                   scopes=frozenset(row.get("scopes", ())),
                   expires_at=datetime.fromisoformat(expires) if expires else None)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        raise AuthenticationError("malformed credential")
    return parts[1], parts[2]


DEFAULT_VALID_DAYS = 90


def new_credential(role: Role, identity: str, name: str = "", scopes: Iterable[Scope] = (), *,
                   valid_for: timedelta = timedelta(days=DEFAULT_VALID_DAYS),
                   now: datetime | None = None) -> tuple[str, StoredCredential]:
    """Returns the token (shown once, to its holder) and what the server stores."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    stored = StoredCredential(key_id, _hash(secret), role, identity, name,
                              frozenset(s.value for s in scopes), (now or datetime.now(timezone.utc)) + valid_for)
    return f"{TOKEN_PREFIX}_{key_id}_{secret}", stored


def _read(path: Path) -> dict[str, StoredCredential]:
    if not path.exists():
        raise FileNotFoundError(f"credentials file {path} does not exist (run `make credentials`)")
    doc = json.loads(path.read_text())
    return {c.key_id: c for c in (StoredCredential.from_json(row) for row in doc["credentials"])}


class Authenticator:
    """Checks bearer tokens. Made from a file, it re-reads the file when it changes (looked at
    no more than once per `check_every` seconds) and on `reload()` (SIGHUP): a revoked
    credential stops working within seconds. A file that cannot be read keeps the last good set."""

    def __init__(self, credentials: Iterable[StoredCredential], *, clock=lambda: datetime.now(timezone.utc)):
        self._by_key = {c.key_id: c for c in credentials}
        self._clock = clock
        self._path: Path | None = None
        self._stamp: tuple = ()
        self._checked = 0.0
        self.check_every = 1.0

    @classmethod
    def from_file(cls, path: Path, *, clock=lambda: datetime.now(timezone.utc)) -> "Authenticator":
        auth = cls(_read(path).values(), clock=clock)
        auth._path, auth._stamp = path, _file_stamp(path)
        return auth

    def reload(self) -> bool:
        """Re-reads the file; False (and the last good set kept) when it cannot be read."""
        if self._path is None:
            return False
        try:
            stamp = _file_stamp(self._path)
            self._by_key = _read(self._path)
            self._stamp = stamp
            return True
        except (OSError, ValueError, KeyError, TypeError) as exc:
            import structlog
            structlog.get_logger("auth").error("credentials.reload_failed", error=str(exc)[:200])
            return False

    def _fresh(self) -> None:
        if self._path is None:
            return
        now = time.monotonic()
        if now - self._checked < self.check_every:
            return
        self._checked = now
        try:
            changed = _file_stamp(self._path) != self._stamp
        except OSError:
            changed = False
        if changed:
            self.reload()

    def authenticate(self, authorization: str | None) -> Caller:
        self._fresh()
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
        if stored.expires_at is None or stored.expires_at <= self._clock():
            raise AuthenticationError("credential expired")
        return Caller(stored.key_id, stored.role, stored.identity, stored.name, stored.scopes)


def _file_stamp(path: Path) -> tuple:
    stat = path.stat()
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


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


def _still_good(path: Path, margin: timedelta = timedelta(days=7)) -> bool:
    """The demo credentials are made anew when any has expired or expires within a week."""
    try:
        horizon = datetime.now(timezone.utc) + margin
        return all(c.expires_at is not None and c.expires_at > horizon for c in _read(path).values())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_credentials(directory: Path, callers=DEMO_CALLERS, *, overwrite: bool = False) -> bool:
    """Creates credentials.json (hashes, for servers) and tokens.json (secrets, for clients).
    Returns False and changes nothing when they exist and overwrite is not asked for."""
    directory.mkdir(parents=True, exist_ok=True)
    stored_path, tokens_path = directory / "credentials.json", directory / "tokens.json"
    if stored_path.exists() and tokens_path.exists() and not overwrite and _still_good(stored_path):
        return False
    stored, tokens = [], {}
    for label, role, identity, name, scopes in callers:
        token, credential = new_credential(role, identity, name, scopes)
        stored.append(credential.to_json())
        tokens[label] = {"token": token, "role": role.value, "identity": identity}
    write_json_atomically(tokens_path, {"version": 1, "tokens": tokens}, 0o600)
    for label, row in tokens.items():   # a platform service reads its own token only, never the demo file
        if row["role"] == Role.SERVICE.value:
            fd = os.open(directory / f"{label}.token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as own:
                own.write(row["token"] + "\n")
    write_json_atomically(stored_path, {"version": 1, "credentials": stored}, 0o600)
    return True


def load_tokens(path: Path) -> dict[str, str]:
    """label -> token, for demo and test clients."""
    doc = json.loads(path.read_text())
    return {label: row["token"] for label, row in doc["tokens"].items()}


def revoke(directory: Path, which: str) -> str:
    """Removes a credential, named by its key id or its demo label; returns its key id."""
    stored_path, tokens_path = directory / "credentials.json", directory / "tokens.json"
    doc = json.loads(stored_path.read_text())
    key_id = which
    if tokens_path.exists():
        tokens = json.loads(tokens_path.read_text())
        if which in tokens["tokens"]:
            key_id = split_token(tokens["tokens"][which]["token"])[0]
    kept = [row for row in doc["credentials"] if row["key_id"] != key_id]
    if len(kept) == len(doc["credentials"]):
        raise SystemExit(f"no credential {which!r} in {stored_path}")
    write_json_atomically(stored_path, {**doc, "credentials": kept}, 0o600)
    return key_id


def main(argv: list[str] | None = None) -> None:
    argv = list(argv if argv is not None else __import__("sys").argv[1:])
    if argv and argv[0] in ("revoke", "list"):
        parser = argparse.ArgumentParser(description="Revoke or list the credentials of a run folder")
        parser.add_argument("command", choices=("revoke", "list"))
        parser.add_argument("directory", type=Path)
        parser.add_argument("which", nargs="?", help="key id or demo label (revoke)")
        args = parser.parse_args(argv)
        if args.command == "revoke":
            print(f"revoked {revoke(args.directory, args.which)}; servers stop accepting it within seconds")
        else:
            for c in _read(args.directory / "credentials.json").values():
                print(f"{c.key_id}  {c.role.value:<10} {c.identity:<8} expires {c.expires_at}  {c.name}")
        return
    parser = argparse.ArgumentParser(description="Create the demo credentials of a run folder")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    created = write_credentials(args.directory, overwrite=args.overwrite)
    print(f"credentials {'created' if created else 'already present'} in {args.directory}")


if __name__ == "__main__":
    main()
