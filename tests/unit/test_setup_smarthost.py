"""The pure parts of the smarthost setup (mailwarden.setup.smarthost): parsing
``[host]:port``, the map texts, masking, and what ``--relayhost none`` takes out."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwarden.config import Settings, SmarthostSettings, from_dict
from mailwarden.errors import ConfigError, UsageError
from mailwarden.setup import answers, smarthost


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[smtp.isp.example]:587", "[smtp.isp.example]:587"),
        ("[SMTP.ISP.Example]:587", "[smtp.isp.example]:587"),
        ("  [smtp.isp.example]:0587 ", "[smtp.isp.example]:587"),
        ("[smtp.isp.example]", "[smtp.isp.example]"),
        ("isp.example:25", "isp.example:25"),
        ("isp.example", "isp.example"),
        ("[192.0.2.7]:587", "[192.0.2.7]:587"),
        ("[127.0.0.1]:65535", "[127.0.0.1]:65535"),
    ],
)
def test_parse_relayhost(text: str, expected: str) -> None:
    assert smarthost.parse_relayhost(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[smtp.isp.example", "expected [host]:port"),
        ("[smtp.isp.example]587", "expected [host]:port"),
        ("[]:587", "not a host name"),
        ("[smtp isp]:587", "not a host name"),
        ("[-bad.example]:587", "not a host name"),
        ("[256.1.1.1]:587", "not a host name"),
        ("[smtp.isp.example]:0", "port must be 1..65535"),
        ("[smtp.isp.example]:65536", "port must be 1..65535"),
        ("[smtp.isp.example]:smtp", "port must be 1..65535"),
        ("[smtp.isp.example]:465", "port 465 (implicit TLS) is not supported"),
        ("a.example:587\nrelayhost = evil", "port must be 1..65535"),
        ("a.example\nrelayhost = evil", "not a host name"),
    ],
)
def test_parse_relayhost_refuses(text: str, why: str) -> None:
    with pytest.raises(UsageError, match=re.escape(why)):
        smarthost.parse_relayhost(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[smtp.isp.example]:587", ("smtp.isp.example", 587, False)),
        ("[smtp.isp.example]", ("smtp.isp.example", 25, False)),
        ("isp.example:2525", ("isp.example", 2525, True)),
        ("isp.example", ("isp.example", 25, True)),
    ],
)
def test_host_port(value: str, expected: tuple[str, int, bool]) -> None:
    assert smarthost.host_port(value) == expected


def test_password_map_and_mask() -> None:
    text = smarthost.passwd_map("[smtp.isp.example]:587", "me@isp.example", "p:a ss#1")
    assert text.splitlines()[-1] == "[smtp.isp.example]:587 me@isp.example:p:a ss#1"
    assert smarthost.password_in(text, "[smtp.isp.example]:587", "me@isp.example") == "p:a ss#1"
    assert smarthost.password_in(text, "[smtp.isp.example]:587", "other") is None
    assert smarthost.password_in(text, "[smtp.isp.example]:25", "me@isp.example") is None
    masked = smarthost.mask(text)
    assert "p:a ss#1" not in masked and "ss#1" not in masked
    assert masked.splitlines()[-1] == "[smtp.isp.example]:587 me@isp.example:***"
    assert masked.splitlines()[0].startswith("# Written by")


@pytest.mark.parametrize(
    ("level", "cafile", "line"),
    [
        ("encrypt", "", "[h.example]:587 encrypt"),
        ("secure", "", "[h.example]:587 secure"),
        ("secure", "/etc/ssl/isp.pem", "[h.example]:587 secure tafile=/etc/ssl/isp.pem"),
        ("encrypt", "/etc/ssl/isp.pem", "[h.example]:587 encrypt"),
    ],
)
def test_tls_map(level: str, cafile: str, line: str) -> None:
    assert smarthost.tls_map("[h.example]:587", level, cafile).splitlines()[-1] == line


@pytest.mark.parametrize("password", ["", " lead", "trail ", "two\nlines", "tab\tx", "nul\0"])
def test_bad_passwords(password: str) -> None:
    with pytest.raises(UsageError):
        smarthost.check_password(password)


@pytest.mark.parametrize("user", ["", "a b", "a:b", "a\nb"])
def test_bad_users(user: str) -> None:
    with pytest.raises(UsageError):
        smarthost.check_user(user)


def test_wanted_puts_our_maps_first_and_keeps_the_admins() -> None:
    current = {"smtp_tls_policy_maps": "hash:/etc/postfix/tls_policy"}
    w = smarthost.wanted("[h.example]:587", "lmdb", "/etc/postfix", current)
    assert w["relayhost"] == "[h.example]:587"
    assert w["smtp_sasl_password_maps"] == "lmdb:/etc/postfix/mailwarden/smarthost_passwd"
    assert w["smtp_tls_policy_maps"] == (
        "lmdb:/etc/postfix/mailwarden/smarthost_tls, hash:/etc/postfix/tls_policy"
    )
    again = smarthost.wanted("[h.example]:587", "lmdb", "/etc/postfix", w)
    assert again == w  # a re-run changes nothing


def test_removal_takes_out_only_what_setup_wrote() -> None:
    current = smarthost.wanted("[h.example]:587", "hash", "/etc/postfix", {})
    current["smtp_tls_policy_maps"] += ", hash:/etc/postfix/tls_policy"
    change, remove = smarthost.removal("hash", "/etc/postfix", current)
    assert change == [("smtp_tls_policy_maps", "hash:/etc/postfix/tls_policy")]
    assert set(remove) == {
        "relayhost",
        "smtp_sasl_password_maps",
        "smtp_sasl_auth_enable",
        "smtp_sasl_security_options",
        "smtp_sasl_tls_security_options",
    }
    admin = {"smtp_sasl_security_options": "noplaintext", "relayhost": ""}
    assert smarthost.removal("hash", "/etc/postfix", admin) == ([], [])


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "relayhost": None,
        "relayhost_user": None,
        "relayhost_password_stdin": False,
        "relayhost_tls": None,
        "relayhost_cafile": None,
    }
    return argparse.Namespace(**(base | kw))


def test_answer_none_keeps_nothing_and_no_flag_keeps_the_recorded_one() -> None:
    assert answers.smarthost_answer(_args(), None) is None
    assert answers.smarthost_answer(_args(relayhost="none"), None) == smarthost.Smarthost("")
    recorded = Settings(
        smarthost=SmarthostSettings("[h.example]:587", "me", "secure", "/etc/passwd")
    )
    kept = answers.smarthost_answer(_args(), recorded)
    assert kept == smarthost.Smarthost("[h.example]:587", "me", None, "secure", "/etc/passwd")


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"relayhost": "[h.example]:587"}, "--relayhost needs --relayhost-user"),
        ({"relayhost_user": "me"}, "--relayhost-user needs --relayhost"),
        ({"relayhost_password_stdin": True}, "--relayhost-password-stdin needs --relayhost"),
        (
            {"relayhost": "[h.example]:587", "relayhost_user": "u", "relayhost_cafile": "/ca"},
            "--relayhost-cafile needs --relayhost-tls secure",
        ),
    ],
)
def test_answer_refuses(kw: dict[str, object], why: str) -> None:
    with pytest.raises(UsageError, match=why):
        answers.smarthost_answer(_args(**kw), None)


def test_cafile_must_be_readable_by_postfix(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    ca.chmod(0o600)
    args = _args(
        relayhost="[h.example]:587",
        relayhost_user="u",
        relayhost_tls="secure",
        relayhost_cafile=str(ca),
    )
    with pytest.raises(UsageError, match="user postfix must be able to read it"):
        answers.smarthost_answer(args, None)
    ca.chmod(0o644)
    got = answers.smarthost_answer(args, None)
    assert got is not None and got.cafile == str(ca)
    missing = argparse.Namespace(**(vars(args) | {"relayhost_cafile": str(tmp_path / "no")}))
    with pytest.raises(UsageError, match="No such file"):
        answers.smarthost_answer(missing, None)


def test_config_section() -> None:
    s = from_dict({"smarthost": {"relayhost": "[h.example]:587", "user": "me"}})
    assert s.smarthost.tls == "encrypt"
    with pytest.raises(ConfigError, match="smarthost.tls must be one of"):
        from_dict({"smarthost": {"tls": "may"}})


def _asker(replies: dict[str, str]) -> Callable[[str, str], str]:
    def ask(question: str, default: str) -> str:
        for start, reply in replies.items():
            if question.startswith(start):
                return reply or default
        raise AssertionError(question)

    return ask


def test_prompt_keeps_adds_and_removes_the_smarthost() -> None:
    def secret(_: str) -> str:
        return "pw 1"

    current = smarthost.Smarthost("[h.example]:587", "me", None, "secure", "")
    assert answers.prompt_smarthost(None, _asker({"Smarthost for": ""}), secret) is None
    assert answers.prompt_smarthost(current, _asker({"Smarthost for": ""}), secret) == current
    gone = answers.prompt_smarthost(current, _asker({"Smarthost for": "none"}), secret)
    assert gone == smarthost.Smarthost("")
    new = answers.prompt_smarthost(
        current, _asker({"Smarthost for": "[n.example]:587", "Smarthost login": ""}), secret
    )
    assert new == smarthost.Smarthost("[n.example]:587", "me", "pw 1", "secure", "")
