"""Secrets never reach logs, exports or the terminal."""

from __future__ import annotations

import pytest

from tether.errors import ConfigurationError
from tether.redact import DEFAULT_REDACTOR, REDACTED, Redactor

SECRETS = [
    "sk-ant-api03-AbCdEfGhIjKlMnOp_qr-st",
    "sk-proj-abcdefghijklmnopqrstuvwx",
    "sk-abcdefghijklmnopqrstuvwx",
    "AKIAABCDEFGHIJKLMNOP",
    "ghp_abcdefghijklmnopqrstuvwxyz012345",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_secret_shapes_are_redacted_anywhere_in_text(secret: str) -> None:
    text = f"the tool said: {secret}, then stopped"
    redacted = DEFAULT_REDACTOR.redact_text(text)
    assert secret not in redacted
    assert redacted == f"the tool said: {REDACTED}, then stopped"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def.ghi", f"Authorization: Bearer {REDACTED}"),
        ("authorization=xyz123", f"authorization={REDACTED}"),
        ("OPENAI_API_KEY=abc123secret x", f"OPENAI_API_KEY={REDACTED} x"),
        ('{"api_key": "abcd1234"}', f'{{"api_key": "{REDACTED}"}}'),
        ("password: hunter22", f"password: {REDACTED}"),
        ("curl -H 'x-api-key: zzzzzzzz'", f"curl -H 'x-api-key: {REDACTED}'"),
    ],
)
def test_assignments_keep_their_name_and_lose_their_value(text: str, expected: str) -> None:
    assert DEFAULT_REDACTOR.redact_text(text) == expected


@pytest.mark.parametrize(
    "prose",
    [
        "the token limit was reached",
        "read the password policy first",
        "a secret santa list",
        "ask the api team",
        "sk-short",
        "",
    ],
)
def test_prose_is_left_alone(prose: str) -> None:
    assert DEFAULT_REDACTOR.redact_text(prose) == prose


def test_secret_fields_are_redacted_in_values_and_json_text() -> None:
    redactor = Redactor(secret_fields=frozenset({"ssn", "Card"}))
    value = {"SSN": 123, "name": "ana", "nested": [{"card": "4111"}, ("sk-ant-aaaaaaaaaaaa",)]}
    assert redactor.redact(value) == {
        "SSN": REDACTED,
        "name": "ana",
        "nested": [{"card": REDACTED}, (REDACTED,)],
    }
    assert redactor.redact_text('{"ssn": "12-3\\"4", "x": 1}') == f'{{"ssn": "{REDACTED}", "x": 1}}'
    assert redactor.redact(7) == 7 and redactor.redact(None) is None
    assert redactor.redact_text("her SSN: 123-45-6789, card=4111111111111111; ok") == (
        f"her SSN: {REDACTED}, card={REDACTED}; ok"
    )
    assert redactor.redact_text("the ssn field is optional") == "the ssn field is optional"


@pytest.mark.parametrize("fields", ["ssn", frozenset({""}), frozenset({3})])
def test_bad_secret_fields_are_refused(fields: object) -> None:
    with pytest.raises(ConfigurationError):
        Redactor(secret_fields=fields)  # type: ignore[arg-type]
