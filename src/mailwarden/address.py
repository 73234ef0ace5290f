"""Mail addresses: parse, normalise, and turn into Maildir paths that cannot escape.

What it does
    Turns text that an operator types (``mailwarden mailbox add``) or that an MTA hands
    us (policy ``recipient=``, LDA ``-a``) into an ``Address(local, domain)`` in one
    canonical form, and turns an ``Address`` into a relative Maildir path and then into
    an absolute path that is proven to lie under the mail root.

Canonical form
    domain   lower-case IDNA 2008 A-label (UTS #46 mapping), no trailing dot, at least one
             dot: ``Bücher.Example.`` -> ``xn--bcher-kva.example``.
    local    lower-cased and NFC-normalised (RFC 6532 §3.1), dot-atom (RFC 5322 §3.2.3):
             ASCII letters, digits, ``#$&'*+-=?^_`{|}~`` and non-ASCII letters/digits
             (SMTPUTF8), single dots between atoms.

What is refused, and why
    quoted local parts, source routes (``@a:u@b``, RFC 5321 §4.1.2 says to ignore them),
    ``%`` and ``!`` (relay hacks, RFC 5321 §3.6.1 / UUCP bang paths), ``/`` and ``\\``
    (path separators), whitespace and control characters, a local part over 64 octets or
    an address over 254 octets (RFC 5321 §4.5.3.1.1 and §4.5.3.1.3).

Who calls it
    the admin CLI and store (to validate what is written to the database), policyd,
    milter and the LDA (to look recipients up), and the LDA (to build the Maildir path;
    it also opens with ``O_NOFOLLOW``, since this module never touches the filesystem).

Errors
    ``UsageError`` with a one-line message ``invalid address '…': <reason>``,
    ``invalid domain '…': <reason>`` or ``unsafe path component '…': <reason>``.
    ``ValueError`` for an unknown Maildir layout (a programming or config-check error).

Pure: no I/O, no logging, no mutable module state.
"""

from __future__ import annotations

import os
import string
import unicodedata
from dataclasses import dataclass

import idna

from mailwarden.errors import UsageError

__all__ = [
    "LAYOUTS",
    "Address",
    "is_catchall",
    "maildir_path",
    "maildir_relpath",
    "normalize_domain",
    "parse_address",
    "parse_mailbox_address",
    "parse_source",
    "safe_component",
    "strip_extension",
]

LAYOUTS = ("flat", "hashed")

MAX_LOCAL_OCTETS = 64  # RFC 5321 §4.5.3.1.1
MAX_ADDRESS_OCTETS = 254  # RFC 5321 §4.5.3.1.3: a 256-octet path less its angle brackets
MAX_DOMAIN_CHARS = 253  # RFC 1035 §2.3.4, in text form without the trailing dot
MAX_LABEL_CHARS = 63
MAX_COMPONENT_OCTETS = 255  # NAME_MAX on Linux file systems

# RFC 5322 atext less '%', '!' (relay hacks) and '/' (path separator); '.' joins atoms.
_ATOM_SPECIALS = "#$&'*+-=?^_`{|}~"
_LOCAL_ASCII = frozenset(string.ascii_letters + string.digits + _ATOM_SPECIALS + ".")
_LDH = frozenset(string.ascii_lowercase + string.digits + "-")
_REFUSED_CHARS = {
    "%": "'%' is not allowed (relay hack)",
    "!": "'!' is not allowed (bang-path relay hack)",
    "/": "'/' is not allowed (path separator)",
    "\\": "backslash is not allowed",
    '"': "quoted local parts are not supported",
}


@dataclass(frozen=True, slots=True)
class Address:
    """A normalised address; ``local == ""`` means a catch-all alias source ``@domain``."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


def _show(text: str) -> str:
    """Quote input for an error message: one line, control characters escaped, bounded."""
    return repr(text) if len(text) <= 80 else repr(text[:77]) + "..."


def _bad_address(text: str, reason: str) -> UsageError:
    return UsageError(f"invalid address {_show(text)}: {reason}")


def _bad_domain(text: str, reason: str) -> UsageError:
    return UsageError(f"invalid domain {_show(text)}: {reason}")


# --- domains ---------------------------------------------------------------------------


def normalize_domain(text: str) -> str:
    """Return ``text`` as a lower-case A-label domain, or raise ``UsageError``."""
    name = text.strip().lower()
    name = name.removesuffix(".")
    if not name:
        raise _bad_domain(text, "empty")
    if not name.isascii():
        name = _to_alabel(text, name)
    problem = _domain_problem(name)
    if problem:
        raise _bad_domain(text, problem)
    # IDNA 2008 checks on the A-label form too: valid Punycode in 'xn--' labels and no
    # '--' in positions 3-4 of other labels (RFC 5891 §4.2.3.1).
    _to_alabel(text, name)
    return name


def _to_alabel(text: str, name: str) -> str:
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError is a UnicodeError
        raise _bad_domain(text, str(exc) or "not a valid IDNA name") from exc


def _domain_problem(name: str) -> str | None:
    """Why an ASCII domain is not a valid hosted mail domain, or None."""
    if len(name) > MAX_DOMAIN_CHARS:
        return f"longer than {MAX_DOMAIN_CHARS} characters"
    labels = name.split(".")
    if len(labels) < 2:
        return "a hosted mail domain needs at least one dot"
    for label in labels:
        problem = _label_problem(label)
        if problem:
            return problem
    if labels[-1].isdigit():
        return "the top-level label is all-numeric"  # RFC 3696 §2: looks like an IP
    return None


def _label_problem(label: str) -> str | None:
    if not label:
        return "empty label"
    if len(label) > MAX_LABEL_CHARS:
        return f"label {_show(label)} is longer than {MAX_LABEL_CHARS} characters"
    if not set(label) <= _LDH:
        return f"label {_show(label)} may hold only letters, digits and hyphens"
    if label.startswith("-") or label.endswith("-"):
        return f"label {_show(label)} starts or ends with a hyphen"
    return None


# --- addresses -------------------------------------------------------------------------


def parse_address(text: str, *, delimiter: str = "+") -> Address:
    """Parse one address such as ``User+Tag@Example.COM`` or ``<user@example.com>``.

    An extension (``+tag``) is kept; ``delimiter`` is only checked for sanity here, so
    that every parser takes the same keyword (see ``parse_mailbox_address``).
    """
    _check_delimiter(delimiter)
    local, domain = _split_address(text)
    local = unicodedata.normalize("NFC", local.lower())
    problem = _local_problem(local)
    if problem:
        raise _bad_address(text, problem)
    try:
        domain = normalize_domain(domain)
    except UsageError as exc:
        raise _bad_address(text, str(exc)) from exc
    if len(local.encode()) + 1 + len(domain) > MAX_ADDRESS_OCTETS:
        raise _bad_address(text, f"longer than {MAX_ADDRESS_OCTETS} octets")
    return Address(local, domain)


def parse_mailbox_address(text: str, *, delimiter: str = "+") -> Address:
    """Parse the address of a real mailbox: its local part may not hold the delimiter.

    Postfix would strip ``+tag`` before looking the mailbox up, so a mailbox named
    ``a+b`` could never receive mail addressed to it.
    """
    addr = parse_address(text, delimiter=delimiter)
    used = sorted({ch for ch in addr.local if ch in delimiter})
    if used:
        raise _bad_address(
            text, f"{used[0]!r} in the local part is reserved as the recipient delimiter"
        )
    return addr


def parse_source(text: str, *, delimiter: str = "+") -> Address:
    """Parse an alias source: ``@domain`` (catch-all, empty local part) or an address."""
    bare = _strip_brackets(text)
    if bare.startswith("@") and bare.count("@") == 1 and ":" not in bare:
        _check_delimiter(delimiter)
        if any(ch.isspace() for ch in bare):
            raise _bad_address(text, "whitespace is not allowed")
        try:
            return Address("", normalize_domain(bare[1:]))
        except UsageError as exc:
            raise _bad_address(text, str(exc)) from exc
    return parse_address(text, delimiter=delimiter)


def strip_extension(addr: Address, delimiter: str) -> Address:
    """``user+tag@d`` -> ``user@d``, cutting at the first of any delimiter character.

    As Postfix does (``recipient_delimiter``): a local part that starts with a delimiter
    character, or holds none, is returned unchanged; so is everything if ``delimiter``
    is empty.
    """
    _check_delimiter(delimiter)
    cut = next((i for i, ch in enumerate(addr.local) if ch in delimiter), -1)
    if cut <= 0:
        return addr
    return Address(addr.local[:cut], addr.domain)


def is_catchall(addr: Address) -> bool:
    """True for a catch-all alias source ``@domain``."""
    return addr.local == ""


def _strip_brackets(text: str) -> str:
    bare = text.strip()
    if len(bare) >= 2 and bare[0] == "<" and bare[-1] == ">":
        return bare[1:-1]
    return bare


def _split_address(text: str) -> tuple[str, str]:
    """Split into raw (local, domain), refusing the shapes we never accept."""
    bare = _strip_brackets(text)
    if not bare:
        raise _bad_address(text, "empty")
    if '"' in bare:
        raise _bad_address(text, "quoted local parts are not supported")
    if any(ch.isspace() for ch in bare):
        raise _bad_address(text, "whitespace is not allowed")
    if bare.startswith("@") and ":" in bare:
        raise _bad_address(text, "source routes are not supported")
    if "@" not in bare:
        raise _bad_address(text, "missing '@'")
    if bare.count("@") > 1:
        raise _bad_address(text, "more than one '@'")
    local, domain = bare.split("@")
    if not local:
        raise _bad_address(text, "empty local part")
    if not domain:
        raise _bad_address(text, "empty domain")
    return local, domain


def _local_problem(local: str) -> str | None:
    """Why a lower-cased, NFC local part is not an acceptable dot-atom, or None."""
    for ch in local:
        problem = _char_problem(ch)
        if problem:
            return problem
    if local.startswith(".") or local.endswith("."):
        return "local part starts or ends with '.'"
    if ".." in local:
        return "local part contains '..'"
    if len(local.encode()) > MAX_LOCAL_OCTETS:
        return f"local part is longer than {MAX_LOCAL_OCTETS} octets"
    return None


def _char_problem(ch: str) -> str | None:
    if ch in _LOCAL_ASCII:
        return None
    if ch in _REFUSED_CHARS:
        return _REFUSED_CHARS[ch]
    if ch == "\0":
        return "NUL is not allowed"
    if unicodedata.category(ch) == "Cc":  # C0, DEL and C1 controls
        return f"control character {ch!r} is not allowed"
    if ch.isspace():
        return "whitespace is not allowed"
    if not ch.isascii() and ch.isalnum():
        return None  # SMTPUTF8 letters and digits (RFC 6531)
    return f"character {ch!r} is not allowed"


def _check_delimiter(delimiter: str) -> None:
    """A recipient delimiter must be made of local-part punctuation (Postfix allows +-.=)."""
    if not set(delimiter) <= set(_ATOM_SPECIALS + "."):
        raise UsageError(
            f"invalid recipient delimiter {_show(delimiter)}: use characters from "
            f"{_ATOM_SPECIALS + '.'}"
        )


# --- Maildir paths ---------------------------------------------------------------------


def safe_component(name: str) -> str:
    """Return ``name`` if it is safe as one path component, else raise ``UsageError``."""
    problem = _component_problem(name)
    if problem:
        raise UsageError(f"unsafe path component {_show(name)}: {problem}")
    return name


def _component_problem(name: str) -> str | None:
    if not name:
        return "empty"
    if name in (".", ".."):
        return "'.' and '..' are not allowed"
    if "/" in name:
        return "contains '/'"
    if "\0" in name:
        return "contains NUL"
    if any(unicodedata.category(ch) == "Cc" for ch in name):  # C0, DEL, C1
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("."):
        return "starts with '.' (hidden, or a Maildir++ folder)"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates, e.g. from undecodable argv bytes
        return "is not valid Unicode text"
    if size > MAX_COMPONENT_OCTETS:
        return f"longer than {MAX_COMPONENT_OCTETS} octets"
    return None


def maildir_relpath(addr: Address, layout: str = "flat") -> str:
    """The Maildir of ``addr`` relative to the mail root, with a trailing ``/``.

    ``flat``:   ``example.com/user/``
    ``hashed``: ``e/x/example.com/user/`` (first two characters of the domain; ``_``
                stands in for the second one when the first label has one character,
                as in ``a.example`` -> ``a/_/a.example/user/``)
    The trailing slash is what tells Postfix ``virtual`` and Dovecot it is a Maildir.
    """
    if layout == "flat":
        parts = [addr.domain, addr.local]
    elif layout == "hashed":
        second = addr.domain[1:2].replace(".", "") or "_"
        parts = [addr.domain[:1], second, addr.domain, addr.local]
    else:
        raise ValueError(f"unknown maildir layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    return "/".join(safe_component(part) for part in parts) + "/"


def maildir_path(root: str, relpath: str) -> str:
    """Join ``relpath`` under the mail ``root`` and prove the result stays inside it.

    Returns the normalised absolute path (no trailing slash). This is a string check
    only; it does not follow symlinks, which is why the LDA opens with ``O_NOFOLLOW``.
    """
    if not os.path.isabs(root) or "\0" in root:
        raise UsageError(f"mail root {_show(root)} is not a clean absolute path")
    if not relpath or os.path.isabs(relpath):
        raise UsageError(f"maildir path {_show(relpath)} is not a relative path")
    for part in relpath.removesuffix("/").split("/"):
        _check_relpath_part(relpath, part)
    base = os.path.normpath(root)
    path = os.path.normpath(os.path.join(base, relpath))
    if not path.startswith(base.rstrip(os.sep) + os.sep):
        raise UsageError(f"maildir path {_show(relpath)} escapes the mail root {_show(root)}")
    return path


def _check_relpath_part(relpath: str, part: str) -> None:
    if part == "..":
        raise UsageError(f"maildir path {_show(relpath)} escapes the mail root")
    problem = _component_problem(part)
    if problem:
        raise UsageError(
            f"maildir path {_show(relpath)} has an unsafe component {_show(part)}: {problem}"
        )
