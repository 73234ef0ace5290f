"""``passwords.verify_password`` reads every Dovecot scheme the importer keeps.

Known-answer vectors: each hash below was made by ``doveadm pw -s SCHEME -p pässwörd``
(Dovecot 2.3; crypt and PBKDF2 ones with ``-r`` for speed). The integration test
``tests/integration/test_password_schemes_dovecot.py`` does the same with fresh hashes.
"""

# ruff: noqa: E501 - the known-answer hashes are long, one per line

from __future__ import annotations

import pytest

from mailwarden.imports import hashes
from mailwarden.passwords import hash_password, verify_password

PASSWORD = "pässwörd"

VECTORS = [
    ("SHA1", "{SHA1}9Rfd8dMqES/xrVXGbRsSyzjn6Pc="),
    ("SHA", "{SHA}9Rfd8dMqES/xrVXGbRsSyzjn6Pc="),
    ("SHA256", "{SHA256}RpcL73Cs7YEj8NXQlHF+KlzUEgQeA7JjdgSf5lsoNKQ="),
    ("SHA256.HEX", "{SHA256.HEX}46970bef70aced8123f0d5d094717e2a5cd412041e03b26376049fe65b2834a4"),
    ("SHA512", "{SHA512}csf+G9M7eFdGqclPm4DSWRzTjzwTyKpD91N/MqKoxfm10c7ha2nwIS4OOalNg/V7zzomuud2AHzrsB8NYxEnPg=="),
    ("SSHA", "{SSHA}Ve09zEGT7T4NPqSuRlDMOWcg2XLbi2Xf"),
    ("SSHA256", "{SSHA256}sq0mFC06XVBxIof1oKBzFtFE+O9UNY9OtX8ZKP3rFb/LQcis"),
    ("SSHA512", "{SSHA512}Qz8hoUHj4OLeo5r4XSEVf9GReeT8cjkvU4Kc+Uca48Go0iKqVR+waDr4Jb4q7OnzCQbcU43NJlPisMQ261Bt469D9Gw="),
    ("SSHA512.HEX", "{SSHA512.HEX}e025d558f2f9287c11f7c8a0e4f400b284c291a3065eb0e1b90b8c4a5383631e25cef83a02c0e0d120f159c72415beafdbc367b0bf2baaa6988b746664bcb02de6232324"),
    ("SMD5", "{SMD5}z9VCbluTY0ozUYf5zasdOrJyJzg="),
    ("LDAP-MD5", "{LDAP-MD5}EoQeS6XjfS+/x4RYxnFK3g=="),
    ("PLAIN-MD5", "{PLAIN-MD5}12841e4ba5e37d2fbfc78458c6714ade"),
    ("PLAIN-MD5.B64", "{PLAIN-MD5.B64}EoQeS6XjfS+/x4RYxnFK3g=="),
    ("MD5", "{MD5}$1$4YQMQ8hr$FmmdfO/fl9qEdw0NJfQg91"),
    ("MD5-CRYPT", "{MD5-CRYPT}$1$ZbVEAzBK$QvRqxDPj8d9M3MoBbdaeL1"),
    ("DES-CRYPT", "{DES-CRYPT}wMlL6VWY8sZtU"),
    ("BLF-CRYPT", "{BLF-CRYPT}$2y$04$w8VnnP6E8RIH551oPDuoR.WjiIjAzNb9m6yyTPB/fNhXmguxGc.Ri"),
    ("SHA256-CRYPT", "{SHA256-CRYPT}$5$rounds=1000$lAywUUc7/5/MzumH$dO81L23amAEZOhk1BwW/Ku.4f3jYQE6jMi6DdLlxk4D"),
    ("SHA512-CRYPT", "{SHA512-CRYPT}$6$rounds=1000$gmaez/LafPQALYJU$5hdJalC3.om7ek9PxwW1HkH0RJfoRS4AAiYQAn9kkpDAX5B360mM3hDZGfd5yK1CnzAgriHVGN5IuUETyO3EU1"),
    ("ARGON2I", "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$kCdHZgJl0eUBgF6nQntagA$npzhRXiPrLWgqBGXUFQKt9iXShDYnXdTtQKmWzeIP88"),
    ("ARGON2ID", "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$ysGPfd9kW9haTl1uGGoUBg$t/8lq3xJ+OlFQPP1KOL2QRO8M6zv2fFEoOGPx16GRuQ"),
    ("PBKDF2", "{PBKDF2}$1$Quc1f5tu9aiShXVG$4$988baff1f4341ee1525b55e105b939a3aced3a00"),
    ("SCRAM-SHA-1", "{SCRAM-SHA-1}4096,0Q6o5ixoWvRS18Ic2cYf4g==,QpEe/rlxCXwo/WAhxJpwQyLQM94=,3253bh8fMYYC1OXGlQ8rUcSltvw="),
    ("SCRAM-SHA-256", "{SCRAM-SHA-256}4096,wroGQ2IP6s18V05WmxCfGg==,3PP59/KzzgGCT6sfhGrbS2rT2jB+Hhb4JDpWzlYLWng=,tc+xXg7vye67X6wxXKJwzESaxITPJtm5lhbpbqdq+H4="),
    ("PLAIN", "{PLAIN}pässwörd"),
    ("CLEAR", "{CLEAR}pässwörd"),
    ("CLEARTEXT", "{CLEARTEXT}pässwörd"),
    ("PLAIN.B64", "{PLAIN.B64}cMOkc3N3w7ZyZA=="),
    # {CRYPT} holds any crypt(3) format; a bare crypt string counts as {CRYPT}.
    ("CRYPT", "{CRYPT}$2y$04$w8VnnP6E8RIH551oPDuoR.WjiIjAzNb9m6yyTPB/fNhXmguxGc.Ri"),
    ("CRYPT", "{CRYPT}$1$ZbVEAzBK$QvRqxDPj8d9M3MoBbdaeL1"),
    ("CRYPT", "{CRYPT}wMlL6VWY8sZtU"),
    ("CRYPT", "$5$rounds=1000$lAywUUc7/5/MzumH$dO81L23amAEZOhk1BwW/Ku.4f3jYQE6jMi6DdLlxk4D"),
]  # fmt: skip

BCRYPT_80A = "$2y$04$LnwnPpUH4C8sQkQq4xp9o.LbfncihK67kUYl73DbtQA3/iFq3mde2"

# Dovecot schemes that verify_password deliberately does not read (it returns False):
# CRAM-MD5 stores HMAC-MD5 inner/outer states, DIGEST-MD5 needs the user name and
# realm, PLAIN-MD4 needs MD4 (not in OpenSSL 3's default provider).
NOT_VERIFIED = {"CRAM-MD5", "DIGEST-MD5", "PLAIN-MD4"}


def _wrong(password: str) -> str:
    return password[:-1] + ("x" if password[-1] != "x" else "y")


@pytest.mark.parametrize(("scheme", "stored"), VECTORS)
def test_known_answer(scheme: str, stored: str) -> None:
    assert verify_password(PASSWORD, stored) is True
    assert verify_password("wrong", stored) is False
    assert verify_password(PASSWORD.upper(), stored) is False


@pytest.mark.parametrize("stored", [stored for _, stored in VECTORS if "}" in stored])
def test_scheme_name_is_case_insensitive(stored: str) -> None:
    end = stored.find("}")
    lowered = stored[: end + 1].lower() + stored[end + 1 :]
    assert verify_password(PASSWORD, lowered) is True


def test_des_crypt_uses_first_eight_octets_like_crypt3() -> None:
    # "pässwörd" is 10 octets in UTF-8; DES crypt reads the first 8, as Dovecot does.
    assert verify_password("pässwö", "{DES-CRYPT}wMlL6VWY8sZtU") is True
    assert verify_password("pässw", "{DES-CRYPT}wMlL6VWY8sZtU") is False


def test_bcrypt_reads_first_72_octets_like_crypt_blowfish() -> None:
    # doveadm pw -s BLF-CRYPT -r 4 -p "a"*80; Dovecot accepts the first 72 octets.
    stored = "{BLF-CRYPT}" + BCRYPT_80A
    assert verify_password("a" * 80, stored) is True
    assert verify_password("a" * 72, stored) is True
    assert verify_password("a" * 71, stored) is False


def test_unsalted_digest_read_in_other_encoding_when_size_fits() -> None:
    # Dovecot reads a hex SHA256 even without .HEX when its size is that of a digest.
    hexed = "{SHA256}46970bef70aced8123f0d5d094717e2a5cd412041e03b26376049fe65b2834a4"
    assert verify_password(PASSWORD, hexed) is True
    # An explicit suffix is not second-guessed.
    assert verify_password(PASSWORD, "{SHA256.B64}" + hexed[8:]) is False


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "{",
        "{}",
        "{SHA512}",
        "{SSHA512}",
        "{SSHA512}AAAA",
        "{SHA256}not base64!",
        "{PLAIN-MD5}zz841e4ba5e37d2fbfc78458c6714ade",
        "{SHA256.XYZ}RpcL73Cs7YEj8NXQlHF+KlzUEgQeA7JjdgSf5lsoNKQ=",
        "{CRYPT}$6$",
        "{CRYPT}$6$abc$",
        "{SHA512-CRYPT}$1$ZbVEAzBK$QvRqxDPj8d9M3MoBbdaeL1",
        "{MD5-CRYPT}$6$abc$def",
        "{BLF-CRYPT}$2y$99$w8VnnP6E8RIH551oPDuoR.WjiIjAzNb9m6yyTPB/fNhXmguxGc.Ri",
        "{ARGON2ID}$argon2i$v=19$m=32768,t=4,p=1$kCdHZgJl0eUBgF6nQntagA$npzhRXiPrLWgqBGXUFQKt9iXShDYnXdTtQKmWzeIP88",
        "{ARGON2I}$argon2i$garbage",
        "{PBKDF2}$1$salt$0$988baff1f4341ee1525b55e105b939a3aced3a00",
        "{PBKDF2}$1$salt$99999999$988baff1f4341ee1525b55e105b939a3aced3a00",
        "{PBKDF2}garbage",
        "{SCRAM-SHA-1}4096,@@,@@,@@",
        "{SCRAM-SHA-1}0,AA==,AA==,AA==",
        "{SCRAM-SHA-256}x,y",
        "{PLAIN.HEX}zz",
        "{PLAIN-TRUNC}8-pässwör",
        "{CRAM-MD5}4a60bd37924fc5d45b4c92ce695bac86cb234bc3028aab2a71a225cb0dedfbb9",
        "{PLAIN-MD4}84c1a6a379ead788b7832b658ce73da8",
        "{NOSUCH}pässwörd",
        "$y$j9T$abcdefghijklmnop$0123456789012345678901234567890123456789012",
        "pässwörd",
        "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19",
    ],
)
def test_malformed_or_unsupported_is_false(stored: str) -> None:
    assert verify_password(PASSWORD, stored) is False


@pytest.mark.parametrize("password", ["", "\0", "a\0b", "\udcff", "x" * 1025])
def test_odd_passwords_never_raise(password: str) -> None:
    for _, stored in VECTORS:
        assert verify_password(password, stored) is False


def test_empty_password_never_matches() -> None:
    assert verify_password("", "{PLAIN}") is False
    assert verify_password("", "{PLAIN-MD5}d41d8cd98f00b204e9800998ecf8427e") is False


def test_written_schemes_still_verify() -> None:
    for scheme in ("sha512-crypt", "argon2id"):
        stored = hash_password(PASSWORD, scheme)
        assert verify_password(PASSWORD, stored) is True
        assert verify_password("wrong", stored) is False


def test_every_dovecot_scheme_the_importer_knows_is_covered() -> None:
    covered = {scheme.split(".")[0] for scheme, _ in VECTORS}
    assert not hashes.DOVECOT_SCHEMES - NOT_VERIFIED - covered
    assert not hashes.CLEAR_SCHEMES - {"PLAIN-TRUNC"} - covered


_BY_SCHEME = dict(VECTORS)

# One source hash per crypt prefix in hashes._CRYPT_PREFIXES (and the other formats
# classify keeps), as a PostfixAdmin/vpopmail/shadow database would store it.
_RAW = {
    "$6$": _BY_SCHEME["SHA512-CRYPT"].removeprefix("{SHA512-CRYPT}"),
    "$5$": _BY_SCHEME["SHA256-CRYPT"].removeprefix("{SHA256-CRYPT}"),
    "$2a$": "$2a$04$w8VnnP6E8RIH551oPDuoR.WjiIjAzNb9m6yyTPB/fNhXmguxGc.Ri",
    "$2b$": "$2b$04$w8VnnP6E8RIH551oPDuoR.WjiIjAzNb9m6yyTPB/fNhXmguxGc.Ri",
    "$2y$": "$2y$04$w8VnnP6E8RIH551oPDuoR.WjiIjAzNb9m6yyTPB/fNhXmguxGc.Ri",
    "$argon2id$": _BY_SCHEME["ARGON2ID"].removeprefix("{ARGON2ID}"),
    "$argon2i$": _BY_SCHEME["ARGON2I"].removeprefix("{ARGON2I}"),
    "$1$": "$1$ZbVEAzBK$QvRqxDPj8d9M3MoBbdaeL1",
    "des": "wMlL6VWY8sZtU",
    "hex32": "12841E4BA5E37D2FBFC78458C6714ADE",
    "md5raw": "{MD5RAW}12841e4ba5e37d2fbfc78458c6714ade",
    "courier-md5": "{MD5}EoQeS6XjfS+/x4RYxnFK3g==",
}
# Kept by the importer (Dovecot verifies them) but not by verify_password: libpass has
# no yescrypt, so such users can use IMAP but not the API until they change password.
KEPT_NOT_VERIFIED = {"$y$"}


def test_crypt_prefix_table_is_covered() -> None:
    prefixes = {prefix for prefix, _ in hashes._CRYPT_PREFIXES}
    assert not prefixes - KEPT_NOT_VERIFIED - set(_RAW)


@pytest.mark.parametrize("raw", sorted(_RAW.values()))
def test_every_kept_import_hash_verifies(raw: str) -> None:
    kept = hashes.classify(raw)
    assert isinstance(kept, hashes.Kept), kept
    assert verify_password(PASSWORD, kept.stored) is True
    assert verify_password("wrong", kept.stored) is False
