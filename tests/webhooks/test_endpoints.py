"""Endpoint URLs an admin may configure, and the retry schedule."""

from __future__ import annotations

import pytest

from woundcare.records.webhooks import BadWebhookUrl, check_url
from woundcare.webhooks.deliverer import Retry


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.org/woundcare", "http://127.0.0.1:8099/hook?source=woundcare", "http://localhost:8099/"],
)
def test_an_https_url_or_http_on_this_machine_is_taken(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://hooks.example.org/", "absolute http or https"),
        ("file:///etc/passwd", "absolute http or https"),
        ("/relative/hook", "absolute http or https"),
        ("https://user:hunter2@hooks.example.org/", "no user name or password"),
        ("https://token@hooks.example.org/", "no user name or password"),
        ("https://hooks.example.org/#part", "no fragment"),
        ("http://hooks.example.org/woundcare", "https \\(http only on this machine\\)"),
        ("http://10.0.0.7/hook", "https \\(http only on this machine\\)"),
        ("https://hooks.example.org/" + "a" * 2000, "at most 2000"),
    ],
)
def test_a_bad_url_is_refused_naming_the_rule_not_the_url(url: str, rule: str) -> None:
    with pytest.raises(BadWebhookUrl, match=rule) as refused:
        check_url(url)
    assert refused.value.code == "bad_webhook_url"
    assert "hunter2" not in str(refused.value) and "example" not in str(refused.value)


def test_the_waits_double_with_jitter_up_to_the_cap_then_stop() -> None:
    retry = Retry(base_seconds=10, cap_seconds=100, max_attempts=6)
    for _ in range(200):
        waits = [retry.after(attempt) for attempt in range(1, 6)]
        for wait, full in zip(waits, [10, 20, 40, 80, 100], strict=True):
            assert wait is not None and full / 2 <= wait <= full
    assert retry.after(6) is None
