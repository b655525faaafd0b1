"""The container image and the Kubernetes manifests, checked offline: the Dockerfile against
hadolint, every overlay built by kustomize and validated against Kubernetes' and Strimzi's
schemas, the generated base against the code's declarations, and every port, probe and
environment variable of the manifests against what the code reads."""
import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "k8s"))

import generate  # noqa: E402
import validate  # noqa: E402

from services.common import topology  # noqa: E402
from services.common.config import CommonSettings  # noqa: E402
from services.common.kafka_security import PRINCIPALS  # noqa: E402
from services.common.topics import platform_topics  # noqa: E402

OVERLAYS = ("dev", "prod")


@pytest.fixture(scope="module")
def schemas():
    # A missing schema is a failure, not a skip: `make test` fetches the jar (make k8s-schemas).
    assert validate.STRIMZI_JAR.exists(), "Strimzi's CRD schemas are missing: make k8s-schemas"
    return validate.crd_schemas(validate.STRIMZI_JAR)


@pytest.fixture(scope="module")
def built():
    return {overlay: validate.build(overlay) for overlay in OVERLAYS}


def test_the_dockerfile_passes_hadolint():
    result = subprocess.run([str(Path(sys.executable).parent / "hadolint"), "--no-color",
                             str(ROOT / "deploy" / "container" / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_the_image_runs_as_a_fixed_non_root_user_and_generates_no_code_at_run_time():
    text = (ROOT / "deploy" / "container" / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert "grpc_tools.protoc" not in final and "pip install" not in final
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", text, re.M)   # pinned by version


def test_the_base_is_what_the_code_declares():
    assert generate.main(["--check"]) == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_of_each_overlay_is_valid_against_its_schema(overlay, built, schemas):
    valid, failures = validate.validate(built[overlay], schemas)
    assert failures == []
    assert sum(valid.values()) == len(built[overlay])
    assert valid["KafkaTopic"] == len(platform_topics(generate.DEFAULTS))
    assert valid["KafkaUser"] == len(PRINCIPALS)
    assert valid["Kafka"] == 1 and valid["KafkaNodePool"] == 2


def test_a_misspelt_field_or_an_unknown_kind_fails_validation(built, schemas):
    docs = built["dev"]
    kafka = copy.deepcopy(next(d for d in docs if d["kind"] == "Kafka"))
    kafka["spec"]["kafka"]["listners"] = []
    topic = copy.deepcopy(next(d for d in docs if d["kind"] == "KafkaTopic"))
    topic["spec"]["partitions"] = "six"
    deployment = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    unknown = {"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaThing", "metadata": {"name": "x"}}
    valid, failures = validate.validate([kafka, topic, deployment, unknown], schemas)
    assert not valid and len(failures) == 4


def test_prod_runs_three_controllers_and_three_brokers_with_replication_three(built):
    docs = built["prod"]
    pools = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "KafkaNodePool"}
    assert pools["controllers"]["replicas"] == 3 and pools["controllers"]["roles"] == ["controller"]
    assert pools["brokers"]["replicas"] == 3 and pools["brokers"]["roles"] == ["broker"]
    kafka = next(d for d in docs if d["kind"] == "Kafka")["spec"]["kafka"]
    assert kafka["config"]["default.replication.factor"] == 3 and kafka["config"]["min.insync.replicas"] == 2
    assert all(listener["tls"] and listener["authentication"]["type"] == "scram-sha-512"
               for listener in kafka["listeners"])
    for topic in (d for d in docs if d["kind"] == "KafkaTopic"):
        assert topic["spec"]["replicas"] == 3 and topic["spec"]["config"]["min.insync.replicas"] == 2


def settings_the_code_reads() -> set[str]:
    names = set()
    for path in (ROOT / "services").rglob("*.py"):
        text = path.read_text()
        names |= {f"EPRX_{n}" for n in re.findall(r'env\.(?:text|integer|number|choice|path|raw)\("([A-Z0-9_]+)"', text)}
        names |= {f"EPRX_{n}" for n in re.findall(r'\bport\("([A-Z0-9_]+)"', text)}
        names |= set(re.findall(r'"(EPRX_[A-Z0-9_]+)"', text))
    return names


def containers(docs):
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})   # Deployments, StatefulSets, Jobs
        for container in pod.get("containers", []):
            if container["image"].rsplit(":", 1)[0].endswith("eprx"):
                yield doc, container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_port_probe_and_setting_of_the_manifests_is_one_the_code_has(overlay, built):
    known = settings_the_code_reads()
    ports = CommonSettings.from_env({}).ports
    grpc = {"prescribing": ports.prescribing, "pharmacy": ports.pharmacy, "insurance": ports.insurance,
            "grpc-internal": ports.insurance_internal}
    processes = {p.name for p in topology.application()}
    seen = 0
    for doc, container in containers(built[overlay]):
        seen += 1
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert set(env) <= known, (container["name"], set(env) - known)
        module = container["args"][0]
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
        named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if "grpc" in named:
            assert named["grpc"] == grpc[container["name"]]
            assert named["health"] == int(env["EPRX_HEALTH_PORT"])
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                assert container[probe]["grpc"]["port"] == int(env["EPRX_HEALTH_PORT"])
        if "grpc-internal" in named:
            assert named["grpc-internal"] == ports.insurance_internal
        if "https" in named:
            assert named["https"] == ports.fhir == container["readinessProbe"]["httpGet"]["port"]
        if "metrics" in named:
            assert named["metrics"] == int(env["EPRX_METRICS_PORT"])
        for probe in ("livenessProbe", "startupProbe"):
            command = container.get(probe, {}).get("exec", {}).get("command")
            if command:
                assert command[:3] == ["python", "-m", "services.common.liveness"]
                assert command[command.index("--process") + 1] in processes
                assert env["EPRX_HEALTH_PROCESS"] == command[command.index("--process") + 1]
    assert seen == len(processes) + 1   # every process, and the member import job


def test_the_names_the_manifests_call_each_other_by_are_services_that_exist(built):
    docs = built["dev"]
    services = {d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]} for d in docs if d["kind"] == "Service"}
    for _, container in containers(docs):
        for e in container.get("env", []):
            if e["name"].endswith("_ADDRESS"):
                host, port = e["value"].rsplit(":", 1)
                assert int(port) in services[host], e
