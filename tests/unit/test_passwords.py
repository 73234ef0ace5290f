"""Tests for mailwarden.passwords, including compatibility with Dovecot's ``doveadm pw``."""

from __future__ import annotations

import io
import re
import shutil
import subprocess

import pytest

from mailwarden.errors import UsageError
from mailwarden.passwords import (
    SCHEMES,
    check_password,
    hash_password,
    read_password_stdin,
    verify_password,
)

DOVEADM = shutil.which("doveadm")
needs_doveadm = pytest.mark.skipif(DOVEADM is None, reason="doveadm is not installed")

SHA512_FORMAT = re.compile(r"^\{CRYPT\}\$6\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{86}$")
ARGON2_FORMAT = re.compile(
    r"^\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=3,p=1\$[+/0-9A-Za-z]{22}\$[+/0-9A-Za-z]{43}$"
)
# Made with: doveadm pw -s SHA512-CRYPT -p secret
DOVEADM_SHA512 = (
    "{SHA512-CRYPT}$6$Vk1Se8z63ObZ76/H$OEjZwGohnNHwN8lpMn1Dg.0IS2GZ6zNXg4g8yQ/araALH.gduQ/"
    "RDMs99BoUtEHNWkWPZZ3oOGufCNMD9NYi61"
)
# Made with: doveadm pw -s ARGON2ID -p secret
DOVEADM_ARGON2 = (
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$8Ny5PSfnmNT4/2YZv6f8Sg$"
    "83c8eP+FZ5w07X5vBLg4vWdTp/Rv14Ou28gf8vSqGhU"
)

PASSWORDS = ["secret", "pässwörd ✓", "with space and trailing space ", "x" * 1024]


def test_schemes() -> None:
    assert SCHEMES == ("sha512-crypt", "argon2id")


@pytest.mark.parametrize(
    ("scheme", "pattern"), [("sha512-crypt", SHA512_FORMAT), ("argon2id", ARGON2_FORMAT)]
)
def test_hash_format(scheme: str, pattern: re.Pattern[str]) -> None:
    stored = hash_password("secret", scheme)
    assert pattern.match(stored), stored
    assert "rounds=" not in stored


def test_default_scheme_is_sha512_crypt() -> None:
    assert SHA512_FORMAT.match(hash_password("secret"))


def test_salt_differs_each_time() -> None:
    assert hash_password("secret") != hash_password("secret")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("password", PASSWORDS)
def test_roundtrip(scheme: str, password: str) -> None:
    stored = hash_password(password, scheme)
    assert verify_password(password, stored)
    assert not verify_password(password + "x", stored)
    assert not verify_password(password.upper() + "!", stored)


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("{CRYPT}", True),
        ("{SHA512-CRYPT}", True),
        ("{sha512-crypt}", True),
        ("{crypt}", True),
        ("", True),  # bare $6$
        ("{ARGON2ID}", False),  # wrong scheme for this hash
        ("{PLAIN}", False),
        ("{MD5-CRYPT}", False),
        ("{CRYPT", False),
    ],
)
def test_verify_sha512_prefixes(prefix: str, ok: bool) -> None:
    bare = hash_password("secret").removeprefix("{CRYPT}")
    assert verify_password("secret", prefix + bare) is ok


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "secret",
        "{PLAIN}Secret",  # {PLAIN} is read, as by Dovecot; test_passwords_schemes.py
        "{CRYPT}",
        "{CRYPT}$6$",
        "{CRYPT}$6$salt$notahash",
        "{CRYPT}$1$abc$def",  # md5-crypt: not a scheme we read
        "{CRYPT}$2y$05$abcdefghijklmnopqrstuv",
        "{ARGON2ID}",
        "{ARGON2ID}$argon2id$garbage",
        "{ARGON2ID}$argon2i$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaA",
        "{SHA512-CRYPT}$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaA",
    ],
)
def test_verify_malformed_or_unknown_is_false(stored: str) -> None:
    assert verify_password("secret", stored) is False


@pytest.mark.parametrize("password", ["a\x00b", "x" * 1025, "\udcff"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_verify_never_raises_on_odd_passwords(password: str, scheme: str) -> None:
    assert verify_password(password, hash_password("secret", scheme)) is False


@pytest.mark.parametrize("stored", [DOVEADM_SHA512, DOVEADM_ARGON2])
def test_verify_recorded_doveadm_hashes(stored: str) -> None:
    assert verify_password("secret", stored)
    assert not verify_password("Secret", stored)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("", "empty password"),
        ("a\x00b", "NUL"),
        ("x" * 1025, "longer than 1024 octets"),
        ("é" * 513, "longer than 1024 octets"),
        ("\udcff", "not valid Unicode"),
    ],
)
def test_hash_refuses_bad_passwords(password: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        hash_password(password)
    with pytest.raises(UsageError, match=reason):
        check_password(password)


def test_hash_refuses_unknown_scheme() -> None:
    with pytest.raises(UsageError, match="unknown password scheme 'md5'.*sha512-crypt, argon2id"):
        hash_password("secret", "md5")


def test_error_messages_do_not_leak_the_password() -> None:
    with pytest.raises(UsageError) as info:
        hash_password("topsecret\x00", "sha512-crypt")
    assert "topsecret" not in str(info.value)


# --- read_password_stdin ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("secret\n", "secret"),
        ("secret\r\n", "secret"),
        ("secret", "secret"),
        ("secret\nsecond line\n", "secret"),
        ("  spaced  \n", "  spaced  "),
        ("tab\t\n", "tab\t"),
        ("pässwörd\n", "pässwörd"),
        ("x" * 1024 + "\r\n", "x" * 1024),
    ],
)
def test_read_password_stdin(data: str, expected: str) -> None:
    assert read_password_stdin(io.StringIO(data)) == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("", "empty password on stdin"),
        ("\n", "empty password on stdin"),
        ("\r\n", "empty password on stdin"),
        ("\nsecret\n", "empty password on stdin"),
        ("a\x00b\n", "NUL"),
        ("x" * 1025 + "\n", "longer than 1024 octets"),
        ("x" * 100_000, "longer than 1024 octets"),
        ("é" * 600 + "\n", "longer than 1024 octets"),
    ],
)
def test_read_password_stdin_refuses(data: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        read_password_stdin(io.StringIO(data))


# --- Dovecot compatibility (live doveadm) ------------------------------------------------


def _doveadm(*args: str) -> subprocess.CompletedProcess[str]:
    assert DOVEADM is not None
    return subprocess.run(
        [DOVEADM, "pw", *args], capture_output=True, text=True, timeout=60, check=False
    )


@needs_doveadm
def test_we_verify_fresh_doveadm_sha512_hash() -> None:
    made = _doveadm("-s", "SHA512-CRYPT", "-p", "secret")
    assert made.returncode == 0, made.stderr
    stored = made.stdout.strip()
    assert stored.startswith("{SHA512-CRYPT}$6$")
    assert verify_password("secret", stored)
    assert not verify_password("wrong", stored)


@needs_doveadm
@pytest.mark.parametrize("scheme", SCHEMES)
def test_doveadm_verifies_our_hashes(scheme: str) -> None:
    stored = hash_password("secret", scheme)
    good = _doveadm("-t", stored, "-p", "secret")
    assert good.returncode == 0, good.stderr
    assert "(verified)" in good.stdout
    bad = _doveadm("-t", stored, "-p", "wrong")
    assert bad.returncode != 0
