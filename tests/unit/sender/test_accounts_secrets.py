"""Access tokens at rest: Fernet under SCRM_SECRETS_KEY (first key encrypts, all decrypt), rotation, dev key,
and settings that refuse a missing key in prod without echoing any secret."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from sender.adapters.secrets import DEV_KEY, TokenCipher, UnreadableToken, parse_keys
from sender.config import Settings

OLD, NEW = Fernet.generate_key(), Fernet.generate_key()


def test_a_token_is_stored_encrypted_and_read_back() -> None:
    cipher = TokenCipher([NEW])
    stored = cipher.encrypt("EAAG-secret-token")
    assert "EAAG-secret-token" not in stored
    assert stored != cipher.encrypt("EAAG-secret-token")  # Fernet is randomised: equal tokens look different
    assert cipher.decrypt(stored) == "EAAG-secret-token"
    assert cipher.is_current(stored)


def test_rotation_old_tokens_are_read_and_reencrypted_under_the_first_key() -> None:
    old_only = TokenCipher([OLD])
    stored = old_only.encrypt("tok-1")
    both = TokenCipher([NEW, OLD])
    assert both.decrypt(stored) == "tok-1"
    assert not both.is_current(stored)
    rotated = both.rotate(stored)
    assert both.is_current(rotated) and TokenCipher([NEW]).decrypt(rotated) == "tok-1"
    with pytest.raises(UnreadableToken):
        old_only.decrypt(rotated)
    with pytest.raises(UnreadableToken):
        TokenCipher([NEW]).rotate(stored)


def test_a_damaged_value_is_unreadable_not_a_crash() -> None:
    with pytest.raises(UnreadableToken):
        TokenCipher([NEW]).decrypt("not-a-fernet-token")


@pytest.mark.parametrize(("raw", "count"), [("", 0), ("  ", 0), (NEW.decode(), 1),
                                            (f"{NEW.decode()}, {OLD.decode()}", 2)])
def test_keys_are_a_comma_separated_list(raw: str, count: int) -> None:
    assert len(parse_keys(raw)) == count


@pytest.mark.parametrize(("raw", "position"), [("abc", 1), (f"{NEW.decode()},abc", 2), (f"{NEW.decode()},,", 2)])
def test_a_malformed_key_is_named_by_position_never_echoed(raw: str, position: int) -> None:
    with pytest.raises(ValueError, match=f"key {position} ") as caught:
        parse_keys(raw)
    assert "abc" not in str(caught.value)


def test_without_a_key_dev_falls_back_to_the_fixed_dev_key() -> None:
    cipher, dev = TokenCipher.from_setting("")
    assert dev
    assert TokenCipher([DEV_KEY]).decrypt(cipher.encrypt("t")) == "t"
    _, dev = TokenCipher.from_setting(NEW.decode())
    assert not dev


def test_prod_refuses_a_missing_key_and_every_env_a_malformed_one_without_echoing_secrets() -> None:
    Settings(env="prod", internal_token="a-real-internal-token", link_secret="a-real-link-secret", secrets_key=NEW.decode())  # type: ignore[arg-type]
    for kwargs in ({"env": "prod", "internal_token": "a-real-internal-token", "link_secret": "a-real-link-secret"},
                   {"env": "dev", "secrets_key": "not-a-key-SECRET"}):
        with pytest.raises(ValidationError) as caught:
            Settings(bootstrap_access_token="TOKEN-SECRET", **kwargs)  # type: ignore[arg-type]
        assert "SCRM_SECRETS_KEY" in str(caught.value)
        assert "SECRET" not in str(caught.value).replace("SCRM_SECRETS_KEY", "")
    assert "TOKEN-SECRET" not in repr(Settings(bootstrap_access_token="TOKEN-SECRET"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-11-02", "2026-11-02T00:00:00+00:00"),
    ("2026-11-02T10:00:00+01:00", "2026-11-02T10:00:00+01:00"),
    ("", None),
])
def test_bootstrap_registration_comes_from_the_environment_else_now(monkeypatch: pytest.MonkeyPatch, raw: str,
                                                                    expected: str | None) -> None:
    from datetime import UTC, datetime
    monkeypatch.setenv("SCRM_BOOTSTRAP_REGISTERED_AT", raw)
    now = datetime(2026, 11, 30, tzinfo=UTC)
    assert Settings().bootstrap_registered(now).isoformat() == (expected or now.isoformat())


def test_bootstrap_throughput_is_a_cloud_api_tier() -> None:
    with pytest.raises(ValidationError, match="80 or 1000"):
        Settings(bootstrap_throughput_per_second=100)  # type: ignore[arg-type]


def test_with_a_real_key_the_dev_key_stays_to_decrypt_only() -> None:
    written_without_a_key = TokenCipher.from_setting("")[0].encrypt("dev-tok")
    cipher, fell_back = TokenCipher.from_setting(NEW.decode())
    assert not fell_back
    assert cipher.decrypt(written_without_a_key) == "dev-tok"  # not lost by setting a key
    assert cipher.under_dev_key(written_without_a_key) and not cipher.is_current(written_without_a_key)
    rotated = cipher.rotate(written_without_a_key)
    assert TokenCipher([NEW]).decrypt(rotated) == "dev-tok" and not cipher.under_dev_key(rotated)
    with pytest.raises(UnreadableToken):  # what it writes is never under the dev key
        TokenCipher([DEV_KEY]).decrypt(cipher.encrypt("new-tok"))
    assert not TokenCipher.from_setting("")[0].under_dev_key(written_without_a_key)  # the dev key is the first there
