"""TLS on a real service process: no plaintext, no untrusted server, the services' port only for
a client certificate the CA signed (and the service it names may call only what its role
lists), and a renewed certificate served without a restart."""
import socket

import grpc
import pytest
from eprescription.insurance.v1 import insurance_pb2, insurance_pb2_grpc

from services.common import tls
from services.common.auth import load_tokens
from tests.support import free_port, serving, wait_until
from tests.support.prescribing_fixtures import start_process, stop_process


@pytest.fixture(scope="module")
def insurance(settings):
    public, internal = free_port(), free_port()
    proc = start_process(["-m", "services.insurance.app"], env={
        "EPRX_INSURANCE_PORT": str(public), "EPRX_INSURANCE_INTERNAL_PORT": str(internal)})
    wait_until(lambda: serving(public) or proc.poll() is not None, timeout=60, message="insurance")
    assert proc.poll() is None
    yield public, internal
    stop_process(proc)


def eligibility(channel, metadata=()):
    return insurance_pb2_grpc.InsuranceServiceStub(channel).CheckEligibility(
        insurance_pb2.CheckEligibilityRequest(card_identifier="DN4010123456789"), metadata=metadata, timeout=5)


def served(channel, metadata=()) -> grpc.StatusCode:
    """The call's status: OK or NOT_FOUND (whether the demo member is there) both mean the
    call went through the handshake and the caller's authentication to the service itself."""
    try:
        eligibility(channel, metadata)
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()


THROUGH = (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND)


def test_every_service_port_speaks_tls_only(settings, insurance):
    public, _ = insurance
    assert settings.pki.enabled, "make test runs with TLS on"
    with grpc.insecure_channel(f"127.0.0.1:{public}") as channel, pytest.raises(grpc.RpcError) as refused:
        eligibility(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    token = load_tokens(settings.credentials_file.parent / "tokens.json")["pharmacy-a"]
    with settings.pki.channel(f"127.0.0.1:{public}") as channel:
        assert served(channel, (("authorization", f"Bearer {token}"),)) in THROUGH
    for service in ("prescribing", "pharmacy", "insurance"):   # the suite's own processes too
        with grpc.insecure_channel(f"127.0.0.1:{getattr(settings.ports, service)}") as channel:
            with pytest.raises(grpc.RpcError):
                eligibility(channel)


def test_a_client_that_does_not_trust_the_ca_is_not_served_a_fake(settings, insurance, tmp_path):
    public, _ = insurance
    other = tls.Pki(tmp_path / "other-ca")
    tls.ensure(other.directory)
    with other.channel(f"127.0.0.1:{public}") as channel, pytest.raises(grpc.RpcError) as refused:
        eligibility(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_services_port_wants_a_certificate_the_ca_signed_and_names_the_service(settings, insurance, tmp_path):
    _, internal = insurance
    token = load_tokens(settings.credentials_file.parent / "tokens.json")["pharmacy-a"]
    # no client certificate, even with a valid bearer token: no handshake
    with settings.pki.channel(f"127.0.0.1:{internal}") as channel, pytest.raises(grpc.RpcError) as refused:
        eligibility(channel, (("authorization", f"Bearer {token}"),))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # a certificate saying "service:pharmacy" from another CA: no handshake
    other = tls.Pki(tmp_path / "other-ca")
    tls.ensure(other.directory)
    forged = grpc.ssl_channel_credentials(settings.pki.ca(), *other.pair("client-pharmacy"))
    with grpc.secure_channel(f"127.0.0.1:{internal}", forged) as channel, pytest.raises(grpc.RpcError) as refused:
        eligibility(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # the pharmacy service's own certificate: served as the service, within the service role
    with settings.pki.channel(f"127.0.0.1:{internal}", client="client-pharmacy") as channel:
        assert served(channel) in THROUGH
        with pytest.raises(grpc.RpcError) as refused:
            insurance_pb2_grpc.InsuranceServiceStub(channel).GetClaim(insurance_pb2.GetClaimRequest(claim_id="c-1"),
                                                                      timeout=5)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def served_serial(port: int, pki: tls.Pki) -> int:
    context = pki.client_context()
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as secured:
            from cryptography import x509
            return x509.load_der_x509_certificate(secured.getpeercert(binary_form=True)).serial_number


def test_a_renewed_certificate_is_served_without_a_restart(settings, insurance):
    public, _ = insurance
    before = served_serial(public, settings.pki)
    # an operator replaces the insurance certificate (here: removes it, and the tool issues anew)
    settings.pki.cert_file("insurance").unlink()
    assert tls.ensure(settings.pki.directory) == ["insurance"]
    after = wait_until(lambda: (s := served_serial(public, settings.pki)) != before and s, timeout=10,
                       message="the renewed certificate")
    assert after != before


def test_a_revoked_token_stops_working_within_seconds_without_a_restart(settings, tmp_path):
    from services.common.auth import revoke, write_credentials
    write_credentials(tmp_path)
    tokens = load_tokens(tmp_path / "tokens.json")
    port, internal = free_port(), free_port()
    proc = start_process(["-m", "services.insurance.app"], env={
        "EPRX_INSURANCE_PORT": str(port), "EPRX_INSURANCE_INTERNAL_PORT": str(internal),
        "EPRX_CREDENTIALS_FILE": str(tmp_path / "credentials.json")})
    try:
        wait_until(lambda: serving(port) or proc.poll() is not None, timeout=60, message="insurance")
        with settings.pki.channel(f"127.0.0.1:{port}") as channel:
            as_pharmacy = (("authorization", f"Bearer {tokens['pharmacy-a']}"),)
            assert served(channel, as_pharmacy) in THROUGH
            revoke(tmp_path, "pharmacy-a")

            wait_until(lambda: served(channel, as_pharmacy) == grpc.StatusCode.UNAUTHENTICATED, timeout=5, interval=0.2, message="the revoked token refused")
            # the others still work, and the process never restarted
            assert served(channel, (("authorization", f"Bearer {tokens['pharmacy-b']}"),)) in THROUGH
        assert proc.poll() is None
    finally:
        stop_process(proc)
