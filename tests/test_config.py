"""Settings as the README gives them: comma-separated (or JSON) lists in the environment, lists in TOML."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from woundcare.config import Settings


def test_environment_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WOUNDCARE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WOUNDCARE_TURN_URLS", "turn:127.0.0.1:3478, turns:127.0.0.1:443?transport=tcp")
    monkeypatch.setenv("WOUNDCARE_TURN_SECRET", "s3cret")
    monkeypatch.setenv("WOUNDCARE_STUN_URLS", "stun:127.0.0.1:3478")
    monkeypatch.setenv("WOUNDCARE_OIDC_SCOPES", "openid,profile")
    monkeypatch.setenv("WOUNDCARE_TRUSTED_PROXIES", "127.0.0.1,::1")
    settings = Settings()
    assert settings.turn_urls == ["turn:127.0.0.1:3478", "turns:127.0.0.1:443?transport=tcp"]
    assert settings.stun_urls == ["stun:127.0.0.1:3478"]
    assert settings.oidc_scopes == ["openid", "profile"]
    assert settings.trusted_proxies == ["127.0.0.1", "::1"]


def test_environment_lists_may_be_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # pydantic-settings' own format for list settings, which earlier versions required.
    monkeypatch.setenv("WOUNDCARE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(
        "WOUNDCARE_TURN_URLS", '["turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:443?transport=tcp"]'
    )
    monkeypatch.setenv("WOUNDCARE_TURN_SECRET", "s3cret")
    monkeypatch.setenv("WOUNDCARE_TRUSTED_PROXIES", ' ["127.0.0.1"]')
    settings = Settings()
    assert settings.turn_urls == ["turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:443?transport=tcp"]
    assert settings.trusted_proxies == ["127.0.0.1"]


@pytest.mark.parametrize("value", ['["turn:127.0.0.1:3478"', '[1, 2]', '["turn:x", 3]', '[["turn:x"]]'])
def test_a_broken_json_list_names_the_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    monkeypatch.setenv("WOUNDCARE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WOUNDCARE_TURN_SECRET", "s3cret")
    monkeypatch.setenv("WOUNDCARE_TURN_URLS", value)
    with pytest.raises(ValidationError, match="comma-separated or a JSON list of strings") as refused:
        Settings()
    assert value not in str(refused.value)  # a list setting may hold secrets (old master keys)


def test_toml_lists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "woundcare.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\nturn_urls = ["turn:127.0.0.1:3478"]\nturn_secret = "s3cret"\n'
        'trusted_proxies = ["10.0.0.0/8"]\n'
    )
    monkeypatch.setenv("WOUNDCARE_CONFIG", str(config))
    settings = Settings()
    assert settings.turn_urls == ["turn:127.0.0.1:3478"]
    assert settings.trusted_proxies == ["10.0.0.0/8"]


def test_a_bad_proxy_names_the_rule_not_the_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WOUNDCARE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WOUNDCARE_TRUSTED_PROXIES", "127.0.0.1,not-an-address")
    with pytest.raises(ValidationError, match="IP addresses or CIDR networks"):
        Settings()


def test_the_readme_helseid_example_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The README's HelseID block, as written there, is a configuration the server takes."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("A HelseID deployment, as a TOML file", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "woundcare.toml"
    config.write_text(block)
    monkeypatch.setenv("WOUNDCARE_CONFIG", str(config))
    monkeypatch.setenv("WOUNDCARE_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.oidc_par and settings.oidc_dpop and settings.oidc_userinfo
    assert settings.oidc_client_auth == "private_key_jwt" and settings.oidc_min_security_level == 4
    assert settings.oidc_hpr_claim == "helseid://claims/hpr/hpr_number"
    assert settings.oidc_security_level_claim == "helseid://claims/identity/security_level"


@pytest.mark.parametrize(
    "values, rule",
    [
        ({"oidc_api_audience": "woundcare-api"}, "oidc_api_audience needs oidc_issuer"),
        ({"oidc_issuer": "https://idp.example", "oidc_client_id": "c", "oidc_client_secret": "s",
          "oidc_client_auth": "private_key_jwt"}, "private_key_jwt needs oidc_client_key_file"),
        ({"oidc_issuer": "https://idp.example", "oidc_client_id": "c", "oidc_client_key_file": "k.jwk",
          "oidc_client_auth": "client_secret_basic"}, "client_secret_basic needs oidc_client_secret"),
        ({"oidc_min_security_level": 5}, "less than or equal to 4"),
        ({"oidc_link_by": "national_id"}, "'subject' or 'hpr_number'"),
    ],
    ids=["audience without issuer", "key auth without key", "secret auth without secret", "level 5", "link by"],
)
def test_helseid_settings_name_their_rule(tmp_path: Path, values: dict[str, object], rule: str) -> None:
    with pytest.raises(ValidationError, match=rule):
        Settings(data_dir=tmp_path, **values)
