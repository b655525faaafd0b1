import json
import stat

import pytest

from services.common.auth import (AuthenticationError, Authenticator, Role, Scope, load_tokens,
                                  new_credential, write_credentials)


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
