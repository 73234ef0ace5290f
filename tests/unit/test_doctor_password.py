"""The doctor's test-mailbox password must never look like an option to doveadm."""

from __future__ import annotations

import pytest

from mailwarden.doctor import checks


def test_password_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks.secrets, "token_urlsafe", lambda n: "-d" + "x" * n)
    password = checks.mailbox_password()
    assert not password.startswith("-")
    assert password.endswith("-d" + "x" * 12)  # the random part is all still there
