"""Mailbox passwords: hash and verify them in the formats Dovecot reads.

What it does
    ``hash_password`` turns a clear-text password into a string for the ``password``
    column that Dovecot's SQL passdb checks as is (``default_pass_scheme`` does not
    matter, the scheme is in the prefix):

    sha512-crypt (default)  ``{CRYPT}$6$<16-char salt>$<hash>``; 5000 rounds, the
                            crypt(3) default, so no ``rounds=`` field
    argon2id                ``{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>``

    ``verify_password`` checks a password against a stored string in any of the
    Dovecot schemes that importers keep (``imports.hashes``), so that a mailbox user who
    can log in to IMAP can also log in to the REST API and Radicale. Scheme names are
    case-insensitive, as in Dovecot; a string without ``{SCHEME}`` counts as ``{CRYPT}``:

    crypt(3)        ``{CRYPT}`` with ``$6$`` ``$5$`` ``$1$`` ``$2a/b/y$`` or DES (13
                    chars); ``{SHA512-CRYPT}`` ``{SHA256-CRYPT}`` ``{MD5-CRYPT}``
                    ``{BLF-CRYPT}`` ``{DES-CRYPT}``; ``{MD5}`` is md5crypt for ``$1$``,
                    else a PLAIN-MD5 digest (as in Dovecot)
    argon2          ``{ARGON2ID}`` ``{ARGON2I}``
    PBKDF2          ``{PBKDF2}$1$<salt>$<rounds>$<hex>`` (HMAC-SHA1, Dovecot's format)
    digests         ``{SHA}`` ``{SHA1}`` ``{SHA256}`` ``{SHA512}`` ``{LDAP-MD5}``
                    (base64 by default), ``{PLAIN-MD5}`` (hex by default); salted
                    ``{SSHA}`` ``{SSHA256}`` ``{SSHA512}`` ``{SMD5}`` (base64 of
                    digest + salt)
    SCRAM           ``{SCRAM-SHA-1}`` ``{SCRAM-SHA-256}`` (``iter,salt,stored,server``)
    clear text      ``{PLAIN}`` ``{CLEAR}`` ``{CLEARTEXT}``

    A ``.B64``/``.HEX`` suffix (``{SSHA512.HEX}``) picks the encoding as in Dovecot;
    without one, a fixed-size digest is also read in the other encoding when only that
    one gives the right size. Comparisons are constant-time. Not verified (False):
    yescrypt ``$y$`` (libpass lacks it), ``{PLAIN-TRUNC}``, ``{PLAIN-MD4}``,
    ``{CRAM-MD5}`` and ``{DIGEST-MD5}`` (the last needs the user name), and any unknown
    or malformed string; it never raises.

    ``read_password_stdin`` reads a password from the first line of a stream, so that
    ``mailwarden mailbox passwd`` never needs a password on its command line.

Who calls it
    the admin CLI (set and check passwords) and the store (to write the column).

Errors
    ``UsageError``: unknown scheme (the message lists the valid ones), empty password,
    a password containing NUL, or one longer than 1024 octets in UTF-8.

Touches nothing but the stream it is given; secrets never appear in error messages.
The crypt(3) formats come from libpass (import name ``passlib``; bcrypt through the
``bcrypt`` package), argon2 from argon2-cffi, digests from hashlib; the stdlib ``crypt``
module is deprecated and is not used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any, TextIO

import argon2
from passlib.hash import bcrypt, des_crypt, md5_crypt, sha256_crypt, sha512_crypt

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

# Dovecot crypt schemes (upper-cased) and the crypt(3) formats each may hold.
_CRYPT_SCHEMES: dict[str, tuple[str, ...]] = {
    "CRYPT": ("$6$", "$5$", "$1$", "$2", "DES"),
    "SHA512-CRYPT": ("$6$",),
    "SHA256-CRYPT": ("$5$",),
    "MD5-CRYPT": ("$1$",),
    "BLF-CRYPT": ("$2",),
    "DES-CRYPT": ("DES",),
}
# libpass handler of each crypt(3) format.
_CRYPT_HANDLERS: dict[str, Any] = {
    "$6$": sha512_crypt,
    "$5$": sha256_crypt,
    "$1$": md5_crypt,
    "$2": bcrypt,
    "DES": des_crypt,
}
_DES = re.compile(r"[./0-9A-Za-z]{13}")
# Unsalted digests: scheme -> (hashlib name, default encoding).
_DIGESTS = {
    "SHA": ("sha1", "B64"),
    "SHA1": ("sha1", "B64"),
    "SHA256": ("sha256", "B64"),
    "SHA512": ("sha512", "B64"),
    "LDAP-MD5": ("md5", "B64"),
    "PLAIN-MD5": ("md5", "HEX"),
}
# Salted digests, base64 (by default) of digest + salt.
_SALTED = {"SSHA": "sha1", "SSHA256": "sha256", "SSHA512": "sha512", "SMD5": "md5"}
_SCRAM = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
_CLEAR = ("PLAIN", "CLEAR", "CLEARTEXT")
_PBKDF2 = re.compile(r"\$1\$([^$]*)\$([0-9]{1,7})\$([0-9a-fA-F]{40})")


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
    try:
        secret = password.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if not secret or len(secret) > MAX_PASSWORD_OCTETS or not isinstance(stored, str):
        return False  # we never store such a password; do not spend CPU on it
    scheme, body = _split_scheme(stored)
    name, _, encoding = scheme.partition(".")
    try:
        return _verify(password, secret, name, encoding, body)
    except Exception:  # noqa: BLE001 - a malformed hash must verify as False, never raise
        return False


def _verify(password: str, secret: bytes, name: str, encoding: str, body: str) -> bool:
    if encoding not in ("", "B64", "HEX", "BASE64"):
        return False
    if encoding == "BASE64":
        encoding = "B64"
    if name in _CRYPT_SCHEMES and not encoding:
        return _verify_crypt(password, body, _CRYPT_SCHEMES[name])
    if name == "MD5" and not encoding and body.startswith("$1$"):
        return _verify_crypt(password, body, ("$1$",))
    if name in ("ARGON2ID", "ARGON2I") and not encoding:
        if body.startswith("$" + name.lower() + "$"):
            return _verify_argon2(password, body)
        return False
    if name == "PBKDF2" and not encoding:
        return _verify_pbkdf2(secret, body)
    if name in _SCRAM and not encoding:
        return _verify_scram(secret, body, _SCRAM[name])
    if name in _CLEAR:
        raw = _decode(body, encoding) if encoding else body.encode("utf-8")
        return raw is not None and hmac.compare_digest(raw, secret)
    if name == "MD5":
        name = "PLAIN-MD5"  # Dovecot: {MD5} without $1$ is a PLAIN-MD5 digest
    if name in _DIGESTS:
        algo, default = _DIGESTS[name]
        want = hashlib.new(algo, secret).digest()
        raw = _decode_sized(body, encoding or default, len(want), bool(encoding))
        return raw is not None and hmac.compare_digest(raw, want)
    if name in _SALTED:
        algo = _SALTED[name]
        size = hashlib.new(algo).digest_size
        raw = _decode(body, encoding or "B64")
        if raw is None or len(raw) <= size:
            return False
        digest, salt = raw[:size], raw[size:]
        return hmac.compare_digest(hashlib.new(algo, secret + salt).digest(), digest)
    return False


def _decode(text: str, encoding: str) -> bytes | None:
    """``text`` decoded as ``B64`` or ``HEX``; None if it is not valid."""
    try:
        if encoding == "HEX":
            return bytes.fromhex(text)
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _decode_sized(text: str, encoding: str, size: int, explicit: bool) -> bytes | None:
    """Decode a digest of ``size`` octets; try the other encoding unless ``explicit``."""
    raw = _decode(text, encoding)
    if raw is not None and len(raw) == size:
        return raw
    if explicit:
        return None
    other = _decode(text, "B64" if encoding == "HEX" else "HEX")
    return other if other is not None and len(other) == size else None


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


def _verify_crypt(password: str, body: str, formats: tuple[str, ...]) -> bool:
    for fmt in formats:
        match = _DES.fullmatch(body) if fmt == "DES" else body.startswith(fmt)
        if match:
            try:
                # crypt_blowfish (Dovecot) reads only the first 72 octets; bcrypt 5 raises.
                secret = password.encode("utf-8")[:72] if fmt == "$2" else password
                return bool(_CRYPT_HANDLERS[fmt].verify(secret, body))
            except (ValueError, TypeError):  # malformed hash, NUL in password, ...
                return False
    return False


def _verify_pbkdf2(secret: bytes, body: str) -> bool:
    """Dovecot's PBKDF2: ``$1$<salt>$<rounds>$<40 hex>``, HMAC-SHA1, salt used as is."""
    match = _PBKDF2.fullmatch(body)
    if match is None:
        return False
    salt, rounds, want = match.group(1), int(match.group(2)), match.group(3)
    if rounds < 1:
        return False
    got = hashlib.pbkdf2_hmac("sha1", secret, salt.encode("utf-8"), rounds)
    return hmac.compare_digest(got.hex(), want.lower())


def _verify_scram(secret: bytes, body: str, algo: str) -> bool:
    """RFC 5802 credentials as Dovecot stores them: ``iter,salt,StoredKey,ServerKey``."""
    parts = body.split(",")
    if len(parts) != 4 or not parts[0].isdigit():
        return False
    rounds = int(parts[0])
    salt, stored_key = _decode(parts[1], "B64"), _decode(parts[2], "B64")
    if salt is None or stored_key is None or not 1 <= rounds <= 10_000_000:
        return False
    salted = hashlib.pbkdf2_hmac(algo, secret, salt, rounds)
    client_key = hmac.new(salted, b"Client Key", algo).digest()
    return hmac.compare_digest(hashlib.new(algo, client_key).digest(), stored_key)


def _verify_argon2(password: str, body: str) -> bool:
    try:
        return _ARGON2.verify(body, password)
    # InvalidHashError is a ValueError; so is a password that cannot be encoded.
    except (argon2.exceptions.VerificationError, ValueError):
        return False
