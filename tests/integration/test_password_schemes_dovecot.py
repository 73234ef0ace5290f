"""mailwarden and Dovecot agree on every password scheme the importer keeps.

For each scheme, a fresh hash is made by the real ``doveadm pw -s SCHEME -p PASSWORD``;
``passwords.verify_password`` must accept the right password and refuse wrong ones,
exactly as ``doveadm pw -t`` does. The hashes also go through ``imports.hashes.classify``
(what ``mailwarden import`` stores) and still verify. Needs only the doveadm binary.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mailwarden.imports import hashes
from mailwarden.passwords import verify_password

# Every scheme ``doveadm pw -l`` lists here (Dovecot 2.3) except those verify_password
# does not read by design, which are left out: CRAM-MD5 (HMAC-MD5 states), DIGEST-MD5
# (doveadm needs a user name; the hash depends on user and realm), PLAIN-MD4 (MD4 is not
# in OpenSSL 3's default provider), PLAIN-TRUNC (needs a length prefix doveadm does not
# write), HMAC-MD5 and OTP (not password hashes for a passdb).
SCHEMES = [
    "ARGON2I", "ARGON2ID", "BLF-CRYPT", "CRYPT", "DES-CRYPT", "MD5", "MD5-CRYPT",
    "SHA256-CRYPT", "SHA512-CRYPT", "PBKDF2", "SHA", "SHA1", "SHA256", "SHA512",
    "SSHA", "SSHA256", "SSHA512", "SMD5", "LDAP-MD5", "PLAIN-MD5", "SCRAM-SHA-1",
    "SCRAM-SHA-256", "PLAIN", "CLEAR", "CLEARTEXT",
    # explicit encodings
    "SHA256.HEX", "SHA512.HEX", "SSHA512.HEX", "SSHA.HEX", "SMD5.HEX", "PLAIN-MD5.B64",
    "LDAP-MD5.HEX", "PLAIN.B64", "PLAIN.HEX", "SHA1.B64",
]  # fmt: skip
PASSWORDS = ["Secr3t-pw!", "pässwörd €", "x", "long-" + "ü" * 40]  # 85 octets: > bcrypt 72

pytestmark = pytest.mark.skipif(
    shutil.which("doveadm") is None, reason="doveadm (Dovecot) is needed to make the hashes"
)


def _doveadm_hash(scheme: str, password: str) -> str:
    argv = ["doveadm", "pw", "-s", scheme, "-p", password]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def _doveadm_verifies(stored: str, password: str) -> bool:
    argv = ["doveadm", "pw", "-t", stored, "-p", password]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return proc.returncode == 0


def _wrong(password: str) -> str:
    return "Z" + password[1:]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_agrees_with_doveadm(scheme: str, password: str) -> None:
    stored = _doveadm_hash(scheme, password)
    assert stored.upper().startswith("{" + scheme + "}"), stored
    assert _doveadm_verifies(stored, password)
    assert verify_password(password, stored) is True, stored
    assert verify_password(_wrong(password), stored) is False
    # Beyond that, agree with Dovecot: DES crypt reads only the first 8 octets and
    # bcrypt the first 72, so a longer wrong password may verify, in both.
    for wrong in (password + "x", ""):
        assert verify_password(wrong, stored) is _doveadm_verifies(stored, wrong), wrong


# imports.hashes.classify reports {PLAIN.B64}/{PLAIN.HEX} as Unsupported (its clear-text
# check does not read encodings), so those are not imported and are left out here.
IMPORTED = [scheme for scheme in SCHEMES if not scheme.startswith("PLAIN.")]
CRYPTS = ["SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "BLF-CRYPT", "DES-CRYPT"]


@pytest.mark.parametrize("scheme", IMPORTED)
def test_imported_hash_still_verifies(scheme: str) -> None:
    password = PASSWORDS[1]
    result = hashes.classify(_doveadm_hash(scheme, password))
    if isinstance(result, hashes.Clear):  # {PLAIN}...: the importer hashes it anew
        assert result.password == password
        return
    assert isinstance(result, hashes.Kept), result
    assert verify_password(password, result.stored) is True
    assert verify_password(_wrong(password), result.stored) is False


@pytest.mark.parametrize("scheme", CRYPTS)
def test_bare_crypt_string_as_imported(scheme: str) -> None:
    # PostfixAdmin/vpopmail/shadow store crypt(3) strings without a {SCHEME} prefix.
    password = PASSWORDS[0]
    bare = _doveadm_hash(scheme, password).split("}", 1)[1]
    result = hashes.classify(bare)
    assert isinstance(result, hashes.Kept), result
    assert _doveadm_verifies(result.stored, password)
    assert verify_password(password, bare) is True
    assert verify_password(password, result.stored) is True
    assert verify_password(_wrong(password), result.stored) is False
