"""The Secrets the manifests of deploy/k8s refer to, made from a state folder kept by whoever
operates the deployment (never committed; default .run/k8s): the project's CA (also Strimzi's
cluster CA), each server's certificate for its cluster DNS names, the Redis ACL users and their
passwords, the API credentials, the prescribers' signing keys, and the pseudonym and log-masking
keys. Re-running it keeps everything that exists (a new pseudonym key would make every
patient someone else) and renews certificates within 30 days of expiry.

    python deploy/k8s/make_secrets.py [--state .run/k8s] [--namespace eprx] > secrets.yaml
    kubectl apply -f secrets.yaml

The Kafka users' passwords are not here: Strimzi's User Operator makes one Secret per
KafkaUser, which the pods mount."""
from __future__ import annotations

import argparse
import base64
import csv
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

from services.common import tls  # noqa: E402
from services.common.auth import write_credentials  # noqa: E402
from services.common.files import shared_secret  # noqa: E402
from services.common.redis_security import ADMIN, acl_lines, ensure_passwords  # noqa: E402
from services.common.signatures import PRIVATE_FILE, PUBLIC_FILE, ensure_keys  # noqa: E402

KAFKA = "eprx"
GRPC_SERVERS = ("prescribing", "pharmacy", "insurance", "fhir")


def hosts(namespace: str):
    def of(name: str) -> tuple[str, ...]:
        if name == "redis":   # every node by its pod name (the cluster announces hostnames)
            return ("redis", "*.redis", f"*.redis.{namespace}.svc", f"*.redis.{namespace}.svc.cluster.local")
        return (name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local")
    return of


def secret(name: str, files: dict[str, bytes], namespace: str, *, labels: dict | None = None,
           annotations: dict | None = None) -> dict:
    meta = {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "eprx", **(labels or {})}}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
            "data": {key: base64.b64encode(value).decode() for key, value in sorted(files.items())}}


def documents(state: Path, namespace: str) -> list[dict]:
    pki = state / "tls"
    tls.ensure(pki, hosts_of=hosts(namespace))
    ca = (pki / "ca.pem").read_bytes()
    out = [secret("eprx-ca", {"ca.pem": ca}, namespace)]
    strimzi = {"strimzi.io/kind": "Kafka", "strimzi.io/cluster": KAFKA}
    out.append(secret(f"{KAFKA}-cluster-ca-cert", {"ca.crt": ca}, namespace, labels=strimzi,
                      annotations={"strimzi.io/ca-cert-generation": "0"}))
    out.append(secret(f"{KAFKA}-cluster-ca", {"ca.key": (pki / "ca.key").read_bytes()}, namespace, labels=strimzi,
                      annotations={"strimzi.io/ca-key-generation": "0"}))
    for name in (*GRPC_SERVERS, "redis"):
        files = {"ca.pem": ca, f"{name}.pem": (pki / f"{name}.pem").read_bytes(),
                 f"{name}.key": (pki / f"{name}.key").read_bytes()}
        for client in tls.SERVICE_CLIENTS if name in tls.SERVICE_CLIENTS else ():
            files[f"client-{client}.pem"] = (pki / f"client-{client}.pem").read_bytes()
            files[f"client-{client}.key"] = (pki / f"client-{client}.key").read_bytes()
        out.append(secret(f"eprx-tls-{name}", files, namespace))
    passwords = ensure_passwords(state / "infra")
    users = {f"{user}.password": password.encode() for user, password in passwords.items()}
    users["users.acl"] = ("\n".join(acl_lines(passwords)) + "\n").encode()
    users["masterauth.conf"] = f"masterauth {passwords[ADMIN]}\n".encode()   # replicas authenticate as admin
    out.append(secret("eprx-redis-users", users, namespace))
    write_credentials(state / "api")
    out.append(secret("eprx-api-credentials", {"credentials.json": (state / "api" / "credentials.json").read_bytes()},
                      namespace))
    keys = state / "keys"
    ensure_keys(keys, _prescribers())
    public = {PUBLIC_FILE: (keys / PUBLIC_FILE).read_bytes()}
    out.append(secret("eprx-signing-keys", {PRIVATE_FILE: (keys / PRIVATE_FILE).read_bytes(), **public}, namespace))
    out.append(secret("eprx-prescriber-public-keys", public, namespace))   # what verifiers get
    out.append(secret("eprx-keys", {"pseudonym-key": shared_secret(state / "secrets" / "pseudonym.key"),
                                    "log-mask-key": shared_secret(state / "secrets" / "log-mask.key")}, namespace))
    return out


def _prescribers() -> list[str]:
    with open(ROOT / "reference" / "v1" / "prescribers.csv", newline="", encoding="utf-8") as f:
        return [row["key_id"] for row in csv.DictReader(f)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", type=Path, default=ROOT / ".run" / "k8s")
    parser.add_argument("--namespace", default="eprx")
    args = parser.parse_args(argv)
    args.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    yaml.safe_dump_all(documents(args.state, args.namespace), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
