"""Who may do what on Kafka: one SCRAM-SHA-512 principal per service over SASL_SSL, and the
ACLs that let each write only the topics it owns and read only what it consumes.

Passwords are made at first start, one file per principal (0600, under the run folder's
credentials), so each process reads only its own. `admin` is the operators' principal (topic
and ACL bootstrap, replay and DLQ tools, the test harness); the broker authenticates to its
own controller with its certificate (mutual TLS) and is a super user too. Plaintext Kafka
exists only under EPRX_PLAINTEXT_DEV=1."""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

from services.common.files import password_files

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
SERVICES = ("prescribing", "pharmacy", "insurance")
AGENCY = "agency"                     # the insurance agency's consumer (services/insurance/agency.py)
PRINCIPALS = (ADMIN, *SERVICES, AGENCY)
AGENCY_GROUP_PREFIX = "bhyt-agency"


def password_file(credentials_dir: Path, principal: str) -> Path:
    return credentials_dir / "kafka" / f"{principal}.password"


def ensure_passwords(credentials_dir: Path) -> dict[str, str]:
    """Every principal's password, made when missing."""
    return password_files(credentials_dir / "kafka", PRINCIPALS)


@dataclass(frozen=True)
class KafkaAccess:
    """How one principal reaches the cluster. `password` None: plaintext (development only)."""
    bootstrap: str
    principal: str
    password: str | None
    cafile: Path | None

    @property
    def secured(self) -> bool:
        return self.password is not None

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def kwargs(self) -> dict:
        """For kafka-python's clients: bootstrap servers and security."""
        if not self.secured:
            return {"bootstrap_servers": self.bootstrap}
        return {"bootstrap_servers": self.bootstrap, "security_protocol": "SASL_SSL", "sasl_mechanism": MECHANISM,
                "sasl_plain_username": self.principal, "sasl_plain_password": self.password,
                "ssl_context": self.ssl_context()}

    def faust_credentials(self):
        if not self.secured:
            return None
        import faust
        return faust.SASLCredentials(username=self.principal, password=self.password,
                                     ssl_context=self.ssl_context(), mechanism=MECHANISM)


def kwargs_of(target: "KafkaAccess | str") -> dict:
    """kafka-python arguments for an access, or for a bare bootstrap string (plaintext)."""
    return target.kwargs() if isinstance(target, KafkaAccess) else {"bootstrap_servers": target}


# ACLs: each service's principal writes what it owns and reads what it consumes.

def _topic(principal, name, op, pattern=ACLResourcePatternType.LITERAL):
    return ACL(f"User:{principal}", "*", op, ACLPermissionType.ALLOW, ResourcePattern(ResourceType.TOPIC, name, pattern))


def _group(principal, name, pattern=ACLResourcePatternType.PREFIXED):
    return ACL(f"User:{principal}", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
               ResourcePattern(ResourceType.GROUP, name, pattern))


def platform_acls(topics: dict[str, str], audit: str | None = None) -> list[ACL]:
    """`topics`: the event topics by role (prescriptions, dispenses, claims, adjudicated,
    alerts); each consumer may also write the dead-letter topic of what it reads."""
    from services.common.topics import dlq
    t = topics
    writes = {"prescribing": [t["prescriptions"]],
              "pharmacy": [t["dispenses"], t["claims"]],
              "insurance": [t["adjudicated"], t["alerts"]]}
    reads = {"prescribing": [t["prescriptions"], t["dispenses"]],
             "pharmacy": [t["prescriptions"]],
             "insurance": [t["claims"], t["prescriptions"]],
             AGENCY: [t["adjudicated"], t["alerts"]]}
    acls = []
    for principal in SERVICES:
        for name in writes[principal] + [dlq(n) for n in reads[principal]] + ([audit] if audit else []):
            acls.append(_topic(principal, name, ACLOperation.WRITE))
        for name in reads[principal]:
            acls.append(_topic(principal, name, ACLOperation.READ))
        # Faust's own topics (changelogs, the assignor's) and its consumer group
        acls.append(_topic(principal, f"eprx-{principal}-", ACLOperation.ALL, ACLResourcePatternType.PREFIXED))
        acls.append(_group(principal, f"eprx-{principal}"))
    for name in reads[AGENCY]:
        acls.append(_topic(AGENCY, name, ACLOperation.READ))
    acls.append(_group(AGENCY, AGENCY_GROUP_PREFIX))
    return acls


def apply_acls(access: KafkaAccess, acls: list[ACL]) -> int:
    """Creates the bindings (the broker keeps one of each); returns how many were asked for."""
    if not access.secured or not acls:
        return 0
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(client_id="eprx-acls", **access.kwargs())
    try:
        result = admin.create_acls(acls)
        failed = result.get("failed", [])
        if failed:
            raise RuntimeError(f"ACLs refused: {failed[:3]}")
        return len(acls)
    finally:
        admin.close()


def broker_properties(*, credentials_dir: Path, pki, kafka_port: int, controller_port: int, keystore: Path) -> list[str]:
    """The broker's security settings: SASL_SSL with SCRAM for clients, mutual TLS on the
    controller listener, the StandardAuthorizer denying what no ACL allows."""
    admin_password = password_file(credentials_dir, ADMIN).read_text().strip()
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" '
            f'password="{admin_password}";')
    return [
        f"listeners=SASL_SSL://127.0.0.1:{kafka_port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{kafka_port}",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL",
        "inter.broker.listener.name=SASL_SSL",
        f"sasl.enabled.mechanisms={MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={pki.ca_file}",
        "ssl.endpoint.identification.algorithm=https",
        "listener.name.controller.ssl.client.auth=required",
        "ssl.principal.mapping.rules=RULE:^CN=([^,]+),.*$/$1/,DEFAULT",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{ADMIN};User:kafka",
    ]


def scram_format_args(credentials_dir: Path) -> list[str]:
    """`kafka-storage format --add-scram ...` for every principal: the users exist from the
    cluster's first start (KRaft keeps SCRAM credentials in its metadata log)."""
    args = []
    for principal, password in ensure_passwords(credentials_dir).items():
        args += ["--add-scram", f"{MECHANISM}=[name={principal},password={password}]"]
    return args
