"""Password hashes of other systems, as a Dovecot passdb must store them.

``classify(raw)`` names the Dovecot scheme of a stored hash and returns it with an
explicit ``{SCHEME}`` prefix, so Dovecot verifies the original password whatever its
``default_pass_scheme``:

=========================================  =====================  ======
stored in the source                       kept as                 weak
=========================================  =====================  ======
``{SCHEME}...`` (a Dovecot scheme)         as is                   (1)
``$6$`` / ``$5$``                          ``{SHA512-CRYPT}`` ...  no
``$2a$`` ``$2b$`` ``$2y$``                 ``{BLF-CRYPT}``         no
``$argon2id$`` / ``$argon2i$``             ``{ARGON2ID}`` ...      no
``$y$`` (yescrypt, libxcrypt)              ``{CRYPT}``             no
``$1$`` (md5crypt)                         ``{MD5-CRYPT}``         yes
13 characters of ``[./0-9A-Za-z]``         ``{DES-CRYPT}``         yes
32 hex digits (PostfixAdmin ``md5``)       ``{PLAIN-MD5}``         yes
``{MD5RAW}hex`` (Courier authlib)          ``{PLAIN-MD5}``         yes
``{PLAIN}`` / ``{CLEAR}`` / clear text     hashed anew (2)         no
=========================================  =====================  ======

(1) unsalted ones (``{MD5}`` base64, ``{SHA}``, ``{SHA256}``, ``{SHA512}``,
``{PLAIN-MD5}``, ``{LDAP-MD5}``) are marked weak. (2) a clear-text password is hashed
with mailwarden's scheme (the user keeps the password); clear text without a ``{PLAIN}``
prefix is only accepted when the caller says the source stores clear text.

Anything else (MySQL ``PASSWORD()`` ``*HEX``, an empty password, unknown schemes) is
``Unsupported``: reported, never replaced by a new password. Pure; no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

# ``doveadm pw -l`` of Dovecot 2.3, the schemes a passdb can verify.
DOVECOT_SCHEMES = frozenset(
    {
        "ARGON2I", "ARGON2ID", "BLF-CRYPT", "CRAM-MD5", "CRYPT", "DES-CRYPT", "DIGEST-MD5",
        "LDAP-MD5", "MD5", "MD5-CRYPT", "PBKDF2", "PLAIN-MD4", "PLAIN-MD5", "SCRAM-SHA-1",
        "SCRAM-SHA-256", "SHA", "SHA1", "SHA256", "SHA256-CRYPT", "SHA512", "SHA512-CRYPT",
        "SMD5", "SSHA", "SSHA256", "SSHA512",
    }
)  # fmt: skip
CLEAR_SCHEMES = frozenset({"PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRUNC"})
WEAK_SCHEMES = frozenset(
    {"MD5-CRYPT", "DES-CRYPT", "PLAIN-MD5", "PLAIN-MD4", "LDAP-MD5", "SHA", "SHA1",
     "SHA256", "SHA512", "SMD5", "CRAM-MD5", "DIGEST-MD5"}
)  # fmt: skip
_CRYPT_PREFIXES = (
    ("$6$", "SHA512-CRYPT"),
    ("$5$", "SHA256-CRYPT"),
    ("$2a$", "BLF-CRYPT"),
    ("$2b$", "BLF-CRYPT"),
    ("$2y$", "BLF-CRYPT"),
    ("$argon2id$", "ARGON2ID"),
    ("$argon2i$", "ARGON2I"),
    ("$y$", "CRYPT"),
    ("$1$", "MD5-CRYPT"),
)
_DES = re.compile(r"^[./0-9A-Za-z]{13}$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass(frozen=True, slots=True)
class Kept:
    """A hash Dovecot verifies: ``stored`` goes into the password column as is."""

    stored: str
    scheme: str
    weak: bool


@dataclass(frozen=True, slots=True)
class Clear:
    """A clear-text password: hash it with mailwarden's scheme."""

    password: str


@dataclass(frozen=True, slots=True)
class Unsupported:
    """Nothing Dovecot can verify; ``why`` says what it looks like."""

    why: str


Hash = Kept | Clear | Unsupported


def classify(raw: str, *, cleartext: bool = False) -> Hash:
    """The Dovecot form of ``raw`` (see the module doc); never raises."""
    if not raw:
        return Unsupported("empty password")
    if any(ord(ch) < 32 for ch in raw):
        return Unsupported("control characters in the password column")
    if raw.startswith("{") and "}" in raw:
        return _prefixed(raw)
    for prefix, scheme in _CRYPT_PREFIXES:
        if raw.startswith(prefix):
            return Kept("{" + scheme + "}" + raw, scheme, scheme in WEAK_SCHEMES)
    if _HEX32.match(raw):
        return Kept("{PLAIN-MD5}" + raw.lower(), "PLAIN-MD5", True)
    if raw.startswith("*") and len(raw) == 41:
        return Unsupported("MySQL PASSWORD() hash (Dovecot has no such scheme)")
    if _DES.match(raw) and not cleartext:
        return Kept("{DES-CRYPT}" + raw, "DES-CRYPT", True)
    if cleartext:
        return Clear(raw)
    return Unsupported("no known hash format (clear text? then use --cleartext)")


def _prefixed(raw: str) -> Hash:
    end = raw.index("}")
    name, body = raw[1:end].upper(), raw[end + 1 :]
    base = name.split(".", 1)[0]
    if name in CLEAR_SCHEMES:
        return Clear(body) if body else Unsupported("empty password")
    if base == "MD5RAW" and _HEX32.match(body):
        return Kept("{PLAIN-MD5}" + body.lower(), "PLAIN-MD5", True)
    if base == "MD5" and not body.startswith("$1$"):
        # Courier's {MD5} is base64 of a plain MD5; Dovecot's {MD5} means md5crypt.
        if _b64_len(body) == 16:
            return Kept("{LDAP-MD5}" + body, "LDAP-MD5", True)
        return Unsupported(f"{{{name}}} that is neither md5crypt nor base64 MD5")
    if base not in DOVECOT_SCHEMES:
        return Unsupported(f"scheme {{{name}}} is not one Dovecot knows")
    if not body:
        return Unsupported("empty hash")
    return Kept(raw, base, base in WEAK_SCHEMES)


def _b64_len(text: str) -> int:
    try:
        return len(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return -1
