"""Table tests for mailwarden.address: parsing, normalisation and Maildir path safety."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarden.address import (
    Address,
    is_catchall,
    maildir_path,
    maildir_relpath,
    normalize_domain,
    parse_address,
    parse_mailbox_address,
    parse_source,
    safe_component,
    strip_extension,
)
from mailwarden.errors import UsageError

LABEL63 = "a" * 63


# --- normalize_domain ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com", "example.com"),
        ("EXAMPLE.Com", "example.com"),
        ("  example.com\n", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008: no transitional mapping to "ss"
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("1.example", "1.example"),
        (f"{LABEL63}.example", f"{LABEL63}.example"),
        (".".join([LABEL63] * 3 + ["a" * 61]), ".".join([LABEL63] * 3 + ["a" * 61])),  # 253
    ],
)
def test_normalize_domain_accepts(text: str, expected: str) -> None:
    assert normalize_domain(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (".", "empty"),
        ("localhost", "at least one dot"),
        ("example.com..", "empty label"),
        ("a..example", "empty label"),
        (".example.com", "empty label"),
        (f"{'a' * 64}.example", "longer than 63"),
        (".".join([LABEL63] * 3 + ["a" * 62]), "longer than 253"),  # 254 characters
        ("-a.example", "hyphen"),
        ("a-.example", "hyphen"),
        ("a_b.example", "letters, digits and hyphens"),
        ("a b.example", "letters, digits and hyphens"),
        ("a/b.example", "letters, digits and hyphens"),
        ("[192.0.2.1]", "letters, digits and hyphens"),
        ("192.0.2.1", "all-numeric"),
        ("ab--cd.example", "hyphens in 3rd and 4th"),
        ("xn--zz.example", "A-label"),
        ("a\x00b.example", "letters, digits and hyphens"),
        ("bü cher.example", "not allowed"),
    ],
)
def test_normalize_domain_refuses(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match="^invalid domain ") as info:
        normalize_domain(text)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


# --- parse_address ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user@example.com", Address("user", "example.com")),
        ("User@Example.COM", Address("user", "example.com")),
        ("  <user@example.com>  ", Address("user", "example.com")),
        ("user@example.com.", Address("user", "example.com")),
        ("user+tag@example.com", Address("user+tag", "example.com")),
        ("first.last@example.com", Address("first.last", "example.com")),
        ("a#$&'*+-=?^_`{|}~z@example.com", Address("a#$&'*+-=?^_`{|}~z", "example.com")),
        ("jörg@bücher.example", Address("jörg", "xn--bcher-kva.example")),
        ("JÖRG@example.com", Address("jörg", "example.com")),
        ("jo\u0308rg@example.com", Address("jörg", "example.com")),  # NFC
        ("用户@example.com", Address("用户", "example.com")),
        ("x" * 64 + "@example.com", Address("x" * 64, "example.com")),
        ("é" * 32 + "@example.com", Address("é" * 32, "example.com")),  # 64 octets
    ],
)
def test_parse_address_accepts(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("<>", "empty"),
        ("userexample.com", "missing '@'"),
        ("a@b@example.com", "more than one '@'"),
        ("@example.com", "empty local part"),
        ("user@", "empty domain"),
        ('"a b"@example.com', "quoted local parts are not supported"),
        ('"user"@example.com', "quoted local parts are not supported"),
        ("@relay.example:user@example.com", "source routes are not supported"),
        ("<@a.example,@b.example:user@example.com>", "source routes are not supported"),
        ("user%other@example.com", "relay hack"),
        ("host!user@example.com", "bang-path"),
        ("a/b@example.com", "'/' is not allowed"),
        ("../x@example.com", "'/' is not allowed"),
        ("a\\b@example.com", "backslash"),
        ("a b@example.com", "whitespace"),
        ("a\tb@example.com", "whitespace"),
        ("user@ example.com", "whitespace"),
        ("a\x00b@example.com", "NUL"),
        ("a\x01b@example.com", "control character"),
        ("a\x7fb@example.com", "control character"),
        ("a\x85b@example.com", "whitespace"),  # NEL: both Cc and space; refused either way
        ("a\u200bb@example.com", "not allowed"),  # zero-width space
        ("a\u202eb@example.com", "not allowed"),  # right-to-left override
        ("a(b)@example.com", "not allowed"),
        ("a,b@example.com", "not allowed"),
        ("a;b@example.com", "not allowed"),
        ("<user@example.com", "not allowed"),
        (".user@example.com", "starts or ends with '.'"),
        ("user.@example.com", "starts or ends with '.'"),
        (".@example.com", "starts or ends with '.'"),
        ("a..b@example.com", "'..'"),
        ("x" * 65 + "@example.com", "longer than 64 octets"),
        ("é" * 33 + "@example.com", "longer than 64 octets"),
        ("x" * 300 + "@example.com", "longer than 64 octets"),
        ("user@localhost", "at least one dot"),
        ("user@a..example", "invalid domain"),
        ("user@a_b.example", "invalid domain"),
    ],
)
def test_parse_address_refuses(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match="^invalid address ") as info:
        parse_address(text)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def _domain_of_length(n: int) -> str:
    """A valid domain of exactly ``n`` characters (n >= 3)."""
    labels = []
    while n > 0:
        size = min(63, n)
        if n - size == 1:  # never leave a remainder too short for "." plus a label
            size -= 2
        labels.append("d" * size)
        n -= size + 1
    return ".".join(labels)


@pytest.mark.parametrize(("domain_len", "ok"), [(189, True), (190, False)])
def test_parse_address_total_length_boundary(domain_len: int, ok: bool) -> None:
    domain = _domain_of_length(domain_len)
    assert len(domain) == domain_len
    text = "x" * 64 + "@" + domain  # 64 + 1 + 189 = 254 octets
    if ok:
        assert str(parse_address(text)) == text
    else:
        with pytest.raises(UsageError, match="longer than 254 octets"):
            parse_address(text)


@pytest.mark.parametrize("delimiter", ["@", "a", "/", "%", " "])
def test_bad_delimiter_is_refused(delimiter: str) -> None:
    with pytest.raises(UsageError, match="invalid recipient delimiter"):
        parse_address("user@example.com", delimiter=delimiter)


def test_address_str() -> None:
    assert str(Address("user", "example.com")) == "user@example.com"
    assert str(Address("", "example.com")) == "@example.com"


# --- parse_mailbox_address -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "delimiter", "expected"),
    [
        ("user@example.com", "+", Address("user", "example.com")),
        ("first-last@example.com", "+", Address("first-last", "example.com")),
        ("user+tag@example.com", "", Address("user+tag", "example.com")),
        ("user+tag@example.com", "-", Address("user+tag", "example.com")),
    ],
)
def test_parse_mailbox_address_accepts(text: str, delimiter: str, expected: Address) -> None:
    assert parse_mailbox_address(text, delimiter=delimiter) == expected


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("user+tag@example.com", "+"),
        ("+user@example.com", "+"),
        ("first-last@example.com", "+-"),
        ("first.last@example.com", "."),
    ],
)
def test_parse_mailbox_address_refuses_delimiter(text: str, delimiter: str) -> None:
    with pytest.raises(UsageError, match="reserved as the recipient delimiter"):
        parse_mailbox_address(text, delimiter=delimiter)


def test_parse_mailbox_address_applies_address_rules() -> None:
    with pytest.raises(UsageError, match="quoted local parts are not supported"):
        parse_mailbox_address('"a b"@example.com')


# --- parse_source, is_catchall ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "catchall"),
    [
        ("@example.com", Address("", "example.com"), True),
        ("@Bücher.Example", Address("", "xn--bcher-kva.example"), True),
        ("<@example.com>", Address("", "example.com"), True),
        ("user@example.com", Address("user", "example.com"), False),
        ("user+tag@example.com", Address("user+tag", "example.com"), False),
    ],
)
def test_parse_source(text: str, expected: Address, catchall: bool) -> None:
    addr = parse_source(text)
    assert addr == expected
    assert is_catchall(addr) is catchall


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("@", "empty"),
        ("@localhost", "at least one dot"),
        ("@ example.com", "whitespace"),
        ("@a.example:user@example.com", "source routes"),
        ("@a@example.com", "more than one '@'"),
        ("example.com", "missing '@'"),
        ("user%x@example.com", "relay hack"),
    ],
)
def test_parse_source_refuses(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match="^invalid address ") as info:
        parse_source(text)
    assert reason in str(info.value)


# --- strip_extension -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "delimiter", "expected"),
    [
        ("user+tag", "+", "user"),
        ("user+tag+more", "+", "user"),
        ("user-tag", "+", "user-tag"),
        ("user-tag", "+-", "user"),
        ("user+a-b", "-+", "user"),  # first occurrence of any character, not the first listed
        ("user-a+b", "+-", "user"),
        ("user", "+", "user"),
        ("user+tag", "", "user+tag"),
        ("+tag", "+", "+tag"),  # starts with the delimiter: left alone, as in Postfix
        ("", "+", ""),
    ],
)
def test_strip_extension(local: str, delimiter: str, expected: str) -> None:
    assert strip_extension(Address(local, "example.com"), delimiter) == Address(
        expected, "example.com"
    )


# --- safe_component --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["user", "example.com", "a.b", "jörg", "x" * 255, "é" * 127])
def test_safe_component_accepts(name: str) -> None:
    assert safe_component(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        (".", "'.' and '..'"),
        ("..", "'.' and '..'"),
        ("a/b", "'/'"),
        ("/", "'/'"),
        ("../x", "'/'"),
        ("\x00", "NUL"),
        ("a\x00b", "NUL"),
        ("a\nb", "control"),
        ("a\x1fb", "control"),
        ("a\x7fb", "control"),
        ("a\x9bb", "control"),
        ("a\\b", "backslash"),
        (".hidden", "starts with '.'"),
        ("x" * 256, "longer than 255 octets"),
        ("x" * 300, "longer than 255 octets"),
        ("é" * 128, "longer than 255 octets"),
        ("a\udcffb", "not valid Unicode"),
    ],
)
def test_safe_component_refuses(name: str, reason: str) -> None:
    with pytest.raises(UsageError, match="^unsafe path component ") as info:
        safe_component(name)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


# --- maildir_relpath -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "layout", "expected"),
    [
        (Address("user", "example.com"), "flat", "example.com/user/"),
        (Address("user", "example.com"), "hashed", "e/x/example.com/user/"),
        (Address("jörg", "xn--bcher-kva.example"), "flat", "xn--bcher-kva.example/jörg/"),
        (Address("user", "x"), "hashed", "x/_/x/user/"),
        (Address("user", "a.example"), "hashed", "a/_/a.example/user/"),
        (Address("user", "xn--bcher-kva.example"), "hashed", "x/n/xn--bcher-kva.example/user/"),
    ],
)
def test_maildir_relpath(addr: Address, layout: str, expected: str) -> None:
    assert maildir_relpath(addr, layout) == expected


def test_maildir_relpath_default_is_flat() -> None:
    assert maildir_relpath(Address("u", "example.com")) == "example.com/u/"


@pytest.mark.parametrize(
    "addr",
    [
        Address("", "example.com"),  # a catch-all has no mailbox
        Address("..", "example.com"),
        Address("a/b", "example.com"),
        Address(".hidden", "example.com"),
        Address("u", ".."),
        Address("u", "a/b"),
        Address("u\x00", "example.com"),
        Address("x" * 300, "example.com"),
        Address("u", ""),
    ],
)
@pytest.mark.parametrize("layout", ["flat", "hashed"])
def test_maildir_relpath_refuses_unsafe(addr: Address, layout: str) -> None:
    with pytest.raises(UsageError, match="unsafe path component"):
        maildir_relpath(addr, layout)


def test_maildir_relpath_unknown_layout() -> None:
    with pytest.raises(ValueError, match="unknown maildir layout"):
        maildir_relpath(Address("u", "example.com"), "deep")


# --- maildir_path ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("root", "relpath", "expected"),
    [
        ("/var/mail", "example.com/user/", "/var/mail/example.com/user"),
        ("/var/mail/", "example.com/user/", "/var/mail/example.com/user"),
        ("/var/mail", "example.com/user", "/var/mail/example.com/user"),
        ("/var/mail", "e/x/example.com/user/", "/var/mail/e/x/example.com/user"),
        ("/", "example.com/user/", "/example.com/user"),
        ("/var/mail", "a..b/c", "/var/mail/a..b/c"),  # '..' inside a name is harmless
    ],
)
def test_maildir_path_accepts(root: str, relpath: str, expected: str) -> None:
    assert maildir_path(root, relpath) == expected


@pytest.mark.parametrize(
    ("root", "relpath", "reason"),
    [
        ("/var/mail", "../x", "escapes the mail root"),
        ("/var/mail", "example.com/../../etc", "escapes the mail root"),
        ("/var/mail", "a/..", "escapes the mail root"),
        ("/var/mail", "..", "escapes the mail root"),
        ("/var/mail", "/etc/passwd", "not a relative path"),
        ("/var/mail", "", "not a relative path"),
        ("/var/mail", "./x", "unsafe component"),
        ("/var/mail", "a//b", "unsafe component"),
        ("/var/mail", "a/b//", "unsafe component"),
        ("/var/mail", "a/\x00/b", "unsafe component"),
        ("/var/mail", "a/.hidden/b", "unsafe component"),
        ("/var/mail", "a\\..\\..\\etc", "unsafe component"),
        ("/var/mail", "a/" + "x" * 300, "unsafe component"),
        ("var/mail", "a/b", "not a clean absolute path"),
        ("", "a/b", "not a clean absolute path"),
        ("/var/mail\x00", "a/b", "not a clean absolute path"),
    ],
)
def test_maildir_path_refuses(root: str, relpath: str, reason: str) -> None:
    with pytest.raises(UsageError) as info:
        maildir_path(root, relpath)
    assert reason in str(info.value)


# --- property: whatever parse_mailbox_address accepts stays inside the mail root ----------

ROOT = "/srv/mail"

_local_chars = st.one_of(
    st.sampled_from("abcXYZ09.+-_'#$&*=?^`{|}~%!/\\\"@ :<>\x00\x7f\n"),
    st.characters(),
)
_address_text = st.one_of(
    st.text(),
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        st.text(_local_chars, min_size=0, max_size=70),
        st.sampled_from(["example.com", "bücher.example", "x.y", "..", "a/b.c", "EXAMPLE.org."]),
    ),
)


@settings(max_examples=500)
@given(_address_text, st.sampled_from(["flat", "hashed"]), st.sampled_from(["+", "+-", ""]))
def test_accepted_mailbox_address_stays_inside_root(text: str, layout: str, delim: str) -> None:
    try:
        addr = parse_mailbox_address(text, delimiter=delim)
    except UsageError:
        return
    path = maildir_path(ROOT, maildir_relpath(addr, layout))
    assert path.startswith(ROOT + os.sep)
    assert os.path.normpath(path) == path
    assert path.endswith(os.sep + addr.local)
    assert "\x00" not in path
