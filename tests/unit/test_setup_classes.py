"""Pure parts of setup's Postfix address-class and Dovecot-version handling."""

from __future__ import annotations

from mailwarden.setup.classes import split_list
from mailwarden.setup.targets import dovecot_series


def test_split_list_like_postfix() -> None:
    assert split_list("$myhostname, example.test, vm,localhost") == [
        "$myhostname",
        "example.test",
        "vm",
        "localhost",
    ]
    assert split_list("localhost inline:{ a.test, b.test }  hash:/etc/x") == [
        "localhost",
        "inline:{ a.test, b.test }",
        "hash:/etc/x",
    ]
    assert split_list("") == []


def test_dovecot_series() -> None:
    assert dovecot_series("2.4.1-4") == "2.4"
    assert dovecot_series("2.3.19.1") == "2.3"
    assert dovecot_series("") == ""
