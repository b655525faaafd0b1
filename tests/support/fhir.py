"""FHIR checks for tests: a resource parses with fhir.resources' R4B models (which match R4 on
the wire for the resources the facade uses), and HAPI FHIR's validator, offline, finds no
error in a set of resources (`make fhir-validator` fetches its jars)."""
from __future__ import annotations

import importlib
import json
import subprocess
from decimal import Decimal
from pathlib import Path

from services.fhir.app import _json_default

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "deploy" / "local" / "fhir-validator"
EXAMPLE = ROOT / "examples" / "fhir" / "prescription-bundle.json"


def example() -> dict:
    """The README's prescription Bundle."""
    return loads(EXAMPLE.read_text())


def entry(bundle: dict, kind: str, n: int = 0) -> dict:
    """The n-th resource of a kind in a Bundle."""
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind][n]


def parse(resource: dict):
    """The resource as a fhir.resources model; raises when it is not valid R4 JSON."""
    kind = resource["resourceType"]
    module = importlib.import_module(f"fhir.resources.R4B.{kind.lower()}")
    return getattr(module, kind).model_validate_json(dumps(resource))


def dumps(resource: dict) -> str:
    return json.dumps(resource, ensure_ascii=False, default=_json_default)


def loads(text: str | bytes) -> dict:
    return json.loads(text, parse_float=Decimal)


def validator_libs() -> Path:
    version = next(line.split(">")[1].split("<")[0] for line in (VALIDATOR / "pom.xml").read_text().splitlines()
                   if "<hapi.version>" in line)
    libs = ROOT / ".cache" / f"hapi-fhir-{version}" / "libs"
    assert (libs / ".stamp").exists(), f"the FHIR validator's jars are missing: run `make fhir-validator` ({libs})"
    return libs


def hapi_validate(directory: Path) -> dict[str, list[dict]]:
    """file name -> the validator's issues (severity, location, message) for every .json in it."""
    done = subprocess.run(["java", "-cp", f"{validator_libs()}/*", str(VALIDATOR / "Validate.java"), str(directory)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {row["file"]: row["issues"] for row in map(json.loads, done.stdout.splitlines())}


def errors(issues: list[dict]) -> list[dict]:
    return [i for i in issues if i["severity"] in ("error", "fatal")]
