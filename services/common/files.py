"""Files the platform writes: whole or not at all."""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path


def write_json_atomically(path: Path, doc: dict, mode: int = 0o644) -> None:
    """Writes beside the target, flushes to disk, then renames over it: a reader sees the old
    file or the new one, never half of one, and a secret is never readable by others."""
    draft = path.with_name(f".{path.name}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(draft, mode)
    os.replace(draft, path)


def shared_secret(path: Path) -> bytes:
    """A random secret kept in `path` (0600), made by whichever process needs it first:
    concurrent starters all end up with the same one (an atomic link decides)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        draft.write_bytes(secrets.token_hex(32).encode())
        draft.chmod(0o600)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_bytes()


def password_files(folder: Path, names) -> dict[str, str]:
    """One random password per name, each in its own file (0600) in `folder` (0700), made when
    missing: a process is given only the file of the principal it runs as. name -> password."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    out = {}
    for name in names:
        path = folder / f"{name}.password"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
        out[name] = path.read_text().strip()
    return out
