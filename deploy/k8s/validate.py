"""Validates every overlay of deploy/k8s offline: `kubectl kustomize` builds it; built-in kinds
go through kubernetes-validate's schemas of Kubernetes 1.37 in strict mode (an unknown field is
an error); Strimzi's kinds through the CRD schemas of the io.strimzi:api tests jar (made strict
the same way: a field the schema does not name is an error). A kind with no schema fails.

    python deploy/k8s/validate.py [--strimzi-jar .cache/strimzi/api-0.49.0-tests.jar]"""
from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
KUBERNETES = "1.37.0"
STRIMZI_JAR = ROOT / ".cache" / "strimzi" / "api-0.49.0-tests.jar"


def build(overlay: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(OVERLAYS / overlay)], capture_output=True, text=True,
                         check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def crd_schemas(jar: Path) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the version's openAPIV3Schema, from every CRD in crds/v1beta2."""
    schemas = {}
    with zipfile.ZipFile(jar) as archive:
        for name in archive.namelist():
            if not (name.startswith("crds/v1beta2/") and name.endswith(".yaml")):
                continue
            for crd in yaml.safe_load_all(archive.read(name)):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec["versions"]:
                    schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = strict(
                        version["schema"]["openAPIV3Schema"])
    return schemas


def strict(schema):
    """What the API server prunes silently (a misspelt field), made an error."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def validate(docs: list[dict], schemas: dict[tuple[str, str], dict]) -> tuple[Counter, list[str]]:
    """Counts of valid resources per kind, and every failure."""
    valid: Counter = Counter()
    failures = []
    for doc in docs:
        api, kind, name = doc.get("apiVersion"), doc.get("kind"), doc.get("metadata", {}).get("name")
        where = f"{kind}/{name}"
        try:
            if "strimzi.io" in api:
                schema = schemas.get((api, kind))
                if schema is None:
                    failures.append(f"{where}: no schema for {api} {kind}")
                    continue
                # metadata is the API server's (ObjectMeta), not the CRD's
                jsonschema.validate({k: v for k, v in doc.items() if k != "metadata"},
                                    {**schema, "properties": {k: v for k, v in schema.get("properties", {}).items()
                                                              if k != "metadata"}})
            else:
                kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{where}: no schema for {api} {kind} in Kubernetes {KUBERNETES}")
            continue
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            failures.append(f"{where}: {getattr(exc, 'message', exc)} at {'/'.join(map(str, exc.path))}")
            continue
        valid[kind] += 1
    return valid, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strimzi-jar", type=Path, default=STRIMZI_JAR)
    args = parser.parse_args(argv)
    schemas = crd_schemas(args.strimzi_jar)
    failed = False
    for overlay in sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir()):
        docs = build(overlay)
        valid, failures = validate(docs, schemas)
        print(f"{overlay}: {len(docs)} resources, {sum(valid.values())} valid: "
              + ", ".join(f"{kind} {n}" for kind, n in sorted(valid.items())))
        for failure in failures:
            print(f"  FAIL {failure}")
        failed |= bool(failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
