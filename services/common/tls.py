"""The local certificate authority and every process's certificate, made at first start, and
the TLS credentials servers and clients build from them.

    python -m services.common.tls RUN_DIR/tls      # creates what is missing, renews what expires soon

Files (0600, under the run folder, never committed): `ca.pem` (what clients trust), `ca.key`,
and per name `<name>.pem` (certificate, then the CA's) and `<name>.key` (PKCS#8). Server
certificates name `localhost` and `127.0.0.1` (and `EPRX_TLS_HOSTS`); a service's client
certificate has the common name `service:<name>`, which is how a service calling another over
mutual TLS is identified. A deployment replaces these files with its own PKI's; servers reload
them when they change, without a restart."""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVERS = ("prescribing", "pharmacy", "insurance", "fhir", "kafka", "redis")
SERVICE_CLIENTS = ("pharmacy",)          # services that call another service over mutual TLS
SERVICE_PREFIX = "service:"
VALID_DAYS = 397
RENEW_WITHIN_DAYS = 30


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eprescription local"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _expires_soon(path: Path, now: dt.datetime) -> bool:
    if not path.exists():
        return True
    cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    return cert.not_valid_after_utc - now < dt.timedelta(days=RENEW_WITHIN_DAYS)


def _ca(directory: Path, now: dt.datetime):
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if key_path.exists() and not _expires_soon(cert_path, now):
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("eprescription local CA")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write(key_path, _key_pem(key))
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _issue(directory: Path, file_name: str, common_name: str, ca_key, ca_cert, now: dt.datetime, *,
           hosts: tuple[str, ...], server: bool, client: bool) -> bool:
    cert_path = directory / f"{file_name}.pem"
    if (directory / f"{file_name}.key").exists() and not _expires_soon(cert_path, now):
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if server:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(directory / f"{file_name}.key", _key_pem(key))
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM))
    return True


def ensure(directory: Path, extra_hosts: tuple[str, ...] = (), now: dt.datetime | None = None, *,
           hosts_of: Callable[[str], tuple[str, ...]] | None = None) -> list[str]:
    """Creates the CA and every certificate that is missing or expires within 30 days;
    returns the names it (re)issued. `hosts_of(name)`: that server's own host names (a
    cluster's DNS names), instead of the local ones every server shares."""
    now = now or dt.datetime.now(dt.timezone.utc)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_key, ca_cert = _ca(directory, now)
    hosts = ("localhost", "127.0.0.1", *extra_hosts)
    made = []
    for name in SERVERS:
        own = hosts_of(name) if hosts_of else (name, *hosts)
        if _issue(directory, name, name, ca_key, ca_cert, now, hosts=own, server=True, client=True):
            made.append(name)
    for name in SERVICE_CLIENTS:
        if _issue(directory, f"client-{name}", f"{SERVICE_PREFIX}{name}", ca_key, ca_cert, now, hosts=(),
                  server=False, client=True):
            made.append(f"client-{name}")
    return made


@dataclass(frozen=True)
class Pki:
    """Where a process finds the CA and its certificates. `enabled` False only under the
    explicit development setting EPRX_PLAINTEXT_DEV=1."""
    directory: Path
    enabled: bool = True

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def cert_file(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    def key_file(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def ca(self) -> bytes:
        return self.ca_file.read_bytes()

    def pair(self, name: str) -> tuple[bytes, bytes]:
        return self.key_file(name).read_bytes(), self.cert_file(name).read_bytes()

    # gRPC

    def server_credentials(self, name: str, *, require_client_cert: bool = False) -> grpc.ServerCredentials:
        """Reloaded when the files change: each new handshake asks whether they did."""
        files = (self.key_file(name), self.cert_file(name), self.ca_file)
        seen = {"stamp": _stamp(files)}

        def config():
            key, chain = self.pair(name)
            return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=self.ca())

        def fetch():
            stamp = _stamp(files)
            if stamp == seen["stamp"]:
                return None
            try:
                if not _matching(*self.pair(name)):
                    return None   # the key and the certificate are being replaced: not yet
                fresh = config()
            except (OSError, ValueError):
                return None   # a half-written file: keep serving with the previous pair
            seen["stamp"] = stamp
            return fresh
        return grpc.dynamic_ssl_server_credentials(config(), fetch, require_client_authentication=require_client_cert)

    def channel_credentials(self, client: str | None = None) -> grpc.ChannelCredentials:
        """Trusts the CA; with `client`, presents that certificate (mutual TLS)."""
        if client is None:
            return grpc.ssl_channel_credentials(root_certificates=self.ca())
        key, chain = self.pair(client)
        return grpc.ssl_channel_credentials(root_certificates=self.ca(), private_key=key, certificate_chain=chain)

    def aio_channel(self, address: str, *, client: str | None = None, options=()) -> grpc.aio.Channel:
        if not self.enabled:
            return grpc.aio.insecure_channel(address, options=list(options))
        return grpc.aio.secure_channel(address, self.channel_credentials(client), options=list(options))

    def channel(self, address: str, *, client: str | None = None, options=()) -> grpc.Channel:
        if not self.enabled:
            return grpc.insecure_channel(address, options=list(options))
        return grpc.secure_channel(address, self.channel_credentials(client), options=list(options))

    # Plain TLS (HTTP, Kafka, Redis clients)

    def client_context(self, client: str | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if client is not None:
            context.load_cert_chain(str(self.cert_file(client)), str(self.key_file(client)))
        return context

    def server_context(self, name: str) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert_file(name)), str(self.key_file(name)))
        return context


def _matching(key_pem: bytes, chain_pem: bytes) -> bool:
    key = serialization.load_pem_private_key(key_pem, None)
    cert = x509.load_pem_x509_certificates(chain_pem)[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            == cert.public_key().public_bytes(serialization.Encoding.DER, spki))


def _stamp(files) -> tuple:
    return tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files)


def service_of(auth_context: dict) -> str | None:
    """The calling service named by a verified client certificate, if any."""
    names = auth_context.get("x509_common_name") or []
    for raw in names:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        if name.startswith(SERVICE_PREFIX):
            return name[len(SERVICE_PREFIX):]
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create the local CA and the processes' certificates")
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    hosts = tuple(h for h in os.environ.get("EPRX_TLS_HOSTS", "").split(",") if h)
    made = ensure(args.directory, hosts)
    print(f"certificates in {args.directory}: " + (", ".join(made) + " issued" if made else "all current"))


if __name__ == "__main__":
    main()
