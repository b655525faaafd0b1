"""Redis Lua scripts live in `lua/` next to the adapter that loads them."""
from __future__ import annotations

from pathlib import Path


def lua(adapter_file: str, name: str) -> str:
    """The text of `lua/<name>.lua` beside the module `adapter_file` (pass `__file__`)."""
    return (Path(adapter_file).resolve().parent / "lua" / f"{name}.lua").read_text()
