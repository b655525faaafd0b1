import json
import stat
from datetime import datetime, timedelta, timezone

import pytest

from services.common.auth import (AuthenticationError, Authenticator, Role, Scope, StoredCredential, load_tokens,
                                  new_credential, revoke, write_credentials)


def test_a_token_authenticates_as_its_role_and_identity():
    token, stored = new_credential(Role.PHARMACY, "PH0001", "Pharmacy A", [Scope.SUBSTITUTE])
    caller = Authenticator([stored]).authenticate(f"Bearer {token}")
    assert (caller.role, caller.identity) == (Role.PHARMACY, "PH0001")
    assert caller.may(Scope.SUBSTITUTE)


def test_the_server_side_never_holds_the_secret():
    token, stored = new_credential(Role.PRESCRIBER, "01001")
    secret = token.split("_", 2)[2]
    assert secret not in json.dumps(stored.to_json())


@pytest.mark.parametrize("header, message", [
    (None, "missing authorization"),
    ("", "missing authorization"),
    ("Basic abc", "Bearer"),
    ("Bearer nonsense", "malformed"),
    ("Bearer eprx__x", "malformed"),
])
def test_bad_headers_are_refused_with_a_reason(header, message):
    with pytest.raises(AuthenticationError, match=message):
        Authenticator([]).authenticate(header)


def test_wrong_secret_and_unknown_key_are_refused_alike():
    token, stored = new_credential(Role.INSURER, "BHXH")
    prefix, key_id, secret = token.split("_", 2)
    auth = Authenticator([stored])
    with pytest.raises(AuthenticationError, match="unknown credential"):
        auth.authenticate(f"Bearer {prefix}_{key_id}_{secret}x")
    with pytest.raises(AuthenticationError, match="unknown credential"):
        auth.authenticate(f"Bearer {prefix}_ffff_{secret}")


def test_demo_credentials_are_generated_once_private_and_usable(tmp_path):
    assert write_credentials(tmp_path) is True
    first = (tmp_path / "tokens.json").read_text()
    assert write_credentials(tmp_path) is False  # a second start keeps them
    assert (tmp_path / "tokens.json").read_text() == first
    for name in ("tokens.json", "credentials.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    tokens = load_tokens(tmp_path / "tokens.json")
    auth = Authenticator.from_file(tmp_path / "credentials.json")
    assert auth.authenticate(f"Bearer {tokens['insurer']}").role is Role.INSURER
    assert auth.authenticate(f"Bearer {tokens['prescriber-hospital-a']}").identity == "01001"
    assert not auth.authenticate(f"Bearer {tokens['pharmacy-b']}").may(Scope.SUBSTITUTE)


def test_an_expired_credential_is_refused_and_one_without_expiry_too():
    now = datetime(2026, 11, 30, tzinfo=timezone.utc)
    token, stored = new_credential(Role.PHARMACY, "PH0001", valid_for=timedelta(days=1), now=now)
    clock = [now]
    auth = Authenticator([stored], clock=lambda: clock[0])
    assert auth.authenticate(f"Bearer {token}").identity == "PH0001"
    clock[0] = now + timedelta(days=1)
    with pytest.raises(AuthenticationError, match="expired"):
        auth.authenticate(f"Bearer {token}")
    legacy = StoredCredential.from_json({**stored.to_json(), "expires_at": None})
    with pytest.raises(AuthenticationError, match="expired"):
        Authenticator([legacy], clock=lambda: now).authenticate(f"Bearer {token}")


def test_a_revoked_credential_stops_working_once_the_file_is_re_read(tmp_path):
    write_credentials(tmp_path)
    tokens = load_tokens(tmp_path / "tokens.json")
    auth = Authenticator.from_file(tmp_path / "credentials.json")
    auth.check_every = 0.0
    assert auth.authenticate(f"Bearer {tokens['pharmacy-a']}").identity == "PH0001"
    revoke(tmp_path, "pharmacy-a")
    with pytest.raises(AuthenticationError, match="unknown"):
        auth.authenticate(f"Bearer {tokens['pharmacy-a']}")
    assert auth.authenticate(f"Bearer {tokens['pharmacy-b']}").identity == "PH0002"
    (tmp_path / "credentials.json").write_text("{not json")    # a broken file keeps the last good set
    assert not auth.reload()
    assert auth.authenticate(f"Bearer {tokens['pharmacy-b']}").identity == "PH0002"


def test_demo_credentials_are_made_anew_when_they_near_expiry(tmp_path):
    assert write_credentials(tmp_path)
    assert not write_credentials(tmp_path)                    # current: kept
    doc = json.loads((tmp_path / "credentials.json").read_text())
    doc["credentials"][0]["expires_at"] = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    (tmp_path / "credentials.json").write_text(json.dumps(doc))
    assert write_credentials(tmp_path)                        # one expires within a week: all renewed
    assert (tmp_path / "service-pharmacy.token").stat().st_mode & 0o777 == 0o600
