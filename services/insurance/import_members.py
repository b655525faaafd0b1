"""Imports the agency's member export (CSV): idempotent, and says what it did per row.

    python -m services.insurance.import_members members.csv"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from services.common.progress import Progress
from services.common.redis_client import connect
from services.insurance.adapters import members_csv
from services.insurance.adapters.redis_store import RedisInsuranceStore
from services.insurance.config import Settings


async def run(path: Path, settings: Settings) -> tuple[int, int, int, list[members_csv.Rejected]]:
    accepted, rejected = members_csv.read(path)
    client = connect(settings.common, "insurance")
    store = RedisInsuranceStore(client)
    changed = unchanged = 0
    try:
        with Progress("members", total=len(accepted)) as progress:
            for row, member in accepted:
                outcome, detail = await store.upsert_member(member)
                progress.advance()
                if outcome == "conflict":
                    rejected.append(members_csv.Rejected(row, f"citizen_id already belongs to member {detail}"))
                elif outcome == "changed":
                    changed += 1
                else:
                    unchanged += 1
    finally:
        await client.aclose()
    return changed + unchanged, changed, unchanged, sorted(rejected, key=lambda r: r.row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Import BHYT members from the agency's CSV export")
    parser.add_argument("csv", type=Path)
    args = parser.parse_args(argv)
    try:
        accepted, changed, unchanged, rejected = asyncio.run(run(args.csv, Settings.from_env()))
    except (OSError, ValueError) as exc:
        print(f"members: cannot import {args.csv}: {exc}", file=sys.stderr)
        return 2
    print(f"members: {accepted} accepted ({changed} new or changed, {unchanged} unchanged), {len(rejected)} rejected")
    for r in rejected:
        print(f"members: row {r.row} rejected: {r.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
