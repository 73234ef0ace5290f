"""Mailbox passwords: hash and verify them in the formats Dovecot reads.

What it does
    ``hash_password`` turns a clear-text password into a string for the ``password``
    column that Dovecot's SQL passdb checks as is (``default_pass_scheme`` does not
    matter, the scheme is in the prefix):

    sha512-crypt (default)  ``{CRYPT}$6$<16-char salt>$<hash>``; 5000 rounds, the
                            crypt(3) default, so no ``rounds=`` field
    argon2id                ``{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>``

    ``verify_password`` checks a password against such a string. It reads
    ``{CRYPT}$6$…``, ``{SHA512-CRYPT}$6$…`` (what ``doveadm pw -s SHA512-CRYPT``
    prints), a bare ``$6$…`` and ``{ARGON2ID}…``; scheme names are case-insensitive, as
    in Dovecot. Anything else, or a malformed hash, verifies as False; it never raises.

    ``read_password_stdin`` reads a password from the first line of a stream, so that
    ``mailwarden mailbox passwd`` never needs a password on its command line.

Who calls it
    the admin CLI (set and check passwords) and the store (to write the column).

Errors
    ``UsageError``: unknown scheme (the message lists the valid ones), empty password,
    a password containing NUL, or one longer than 1024 octets in UTF-8.

Touches nothing but the stream it is given; secrets never appear in error messages.
sha512-crypt comes from libpass (import name ``passlib``), argon2id from argon2-cffi;
the stdlib ``crypt`` module is deprecated and is not used.
"""

from __future__ import annotations

from typing import TextIO

import argon2
from passlib.hash import sha512_crypt

from mailwarden.errors import UsageError

__all__ = [
    "MAX_PASSWORD_OCTETS",
    "SCHEMES",
    "check_password",
    "hash_password",
    "read_password_stdin",
    "verify_password",
]

SCHEMES = ("sha512-crypt", "argon2id")
MAX_PASSWORD_OCTETS = 1024

# Both are immutable configured hashers, not state.
_SHA512 = sha512_crypt.using(rounds=5000, salt_size=16)
_ARGON2 = argon2.PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1)

# Dovecot scheme names (upper-cased) we read, with the hash prefix each must carry.
_SHA512_SCHEMES = ("CRYPT", "SHA512-CRYPT")


def hash_password(password: str, scheme: str = "sha512-crypt") -> str:
    """Hash ``password`` and return it with its Dovecot ``{SCHEME}`` prefix."""
    check_password(password)
    if scheme == "sha512-crypt":
        return "{CRYPT}" + str(_SHA512.hash(password))
    if scheme == "argon2id":
        return "{ARGON2ID}" + _ARGON2.hash(password)
    raise UsageError(f"unknown password scheme {scheme!r}: use one of {', '.join(SCHEMES)}")


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; False on mismatch or unknown format."""
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_OCTETS:
        return False  # we never store such a password; do not spend CPU on it
    scheme, body = _split_scheme(stored)
    if scheme in _SHA512_SCHEMES and body.startswith("$6$"):
        return _verify_sha512(password, body)
    if scheme == "ARGON2ID" and body.startswith("$argon2id$"):
        return _verify_argon2(password, body)
    return False


def read_password_stdin(stream: TextIO) -> str:
    """Read a password from the first line of ``stream`` (only CR/LF are stripped)."""
    # Read a bounded amount: one line of at most the limit plus CR LF.
    line = stream.readline(MAX_PASSWORD_OCTETS + 2)
    password = line.rstrip("\r\n")
    if not password:
        raise UsageError("empty password on stdin")
    check_password(password)
    return password


def check_password(password: str) -> None:
    """Raise ``UsageError`` unless ``password`` is something we are willing to hash."""
    if not password:
        raise UsageError("empty password")
    if "\0" in password:
        raise UsageError("password contains a NUL character")
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        raise UsageError("password is not valid Unicode text") from None
    if size > MAX_PASSWORD_OCTETS:
        raise UsageError(f"password is longer than {MAX_PASSWORD_OCTETS} octets")


def _split_scheme(stored: str) -> tuple[str, str]:
    """``{SCHEME}rest`` -> (``SCHEME``, rest); a bare crypt string counts as ``CRYPT``."""
    if stored.startswith("{"):
        end = stored.find("}")
        if end > 0:
            return stored[1:end].upper(), stored[end + 1 :]
        return "", stored
    return "CRYPT", stored


def _verify_sha512(password: str, body: str) -> bool:
    try:
        return bool(sha512_crypt.verify(password, body))
    except (ValueError, TypeError):  # malformed hash, NUL in password, ...
        return False


def _verify_argon2(password: str, body: str) -> bool:
    try:
        return _ARGON2.verify(body, password)
    # InvalidHashError is a ValueError; so is a password that cannot be encoded.
    except (argon2.exceptions.VerificationError, ValueError):
        return False
