"""Files the platform writes: whole or not at all."""
from __future__ import annotations

import json
import os
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
