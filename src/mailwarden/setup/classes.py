"""The Postfix address class of every hosted domain.

Postfix delivers a domain by the first address class that lists it (ADDRESS_CLASS_README):
``mydestination`` (local(8), Unix accounts), ``virtual_alias_domains``,
``virtual_mailbox_domains``, ``relay_domains``. A mailwarden domain belongs to exactly one:
local -> ``virtual_mailbox_domains``, alias -> ``virtual_alias_domains``, relay ->
``relay_domains``. A hosted domain that is also in ``mydestination`` (Debian's postinst
puts the debconf mail name there) has its mail handed to local(8), which bounces it
("unknown user") while Postfix only logs a warning.

Who uses it: ``setup`` (``mydestination_without``: the value to write with the hosted
domains removed, shown by ``--dry-run``) and ``doctor`` (``conflicts``: every domain in a
class other than its own). Lists are read as Postfix reads them: names, ``$parameter``
references (expanded with ``postconf -x``), ``/file`` names and ``type:table`` lookups
(asked with ``postmap -q``).

Errors: ``ConfigError`` with one line naming the domain and the setting when a hosted
domain cannot be taken out of ``mydestination`` safely (it is ``$myhostname``, or comes
from a table, a file or another parameter), or when ``postconf``/``postmap`` fail (a
main.cf syntax error, for instance).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mailwarden.errors import ConfigError

CLASSES = ("mydestination", "virtual_alias_domains", "virtual_mailbox_domains", "relay_domains")
OWN_CLASS = {
    "local": "virtual_mailbox_domains",
    "alias": "virtual_alias_domains",
    "relay": "relay_domains",
}
_REFERENCE = re.compile(r"^\$(?:\{([a-z0-9_]+)\}|([a-z0-9_]+))$")
_TABLE = re.compile(r"^[a-z][a-z0-9_]*:")


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.strip().splitlines() if "fatal" in ln]
    return (lines or proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]


def split_list(value: str) -> list[str]:
    """A Postfix list: entries separated by commas and/or whitespace; ``{ ... }`` kept whole."""
    out: list[str] = []
    word, depth = "", 0
    for ch in value:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
        if depth == 0 and (ch == "," or ch.isspace()):
            if word:
                out.append(word)
            word = ""
            continue
        word += ch
    if word:
        out.append(word)
    return out


@dataclass
class Postconf:
    """The parameters of one Postfix config directory, raw and ``$``-expanded."""

    postfix_dir: str
    raw: dict[str, str] = field(default_factory=dict)
    expanded: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, postfix_dir: str) -> Postconf:
        main_cf = Path(postfix_dir) / "main.cf"
        if not main_cf.is_file():
            raise ConfigError(f"{main_cf} does not exist: Postfix has no configuration")
        pc = cls(postfix_dir)
        for flags, target in ((["-h"], pc.raw), (["-hx"], pc.expanded)):
            proc = _run(["postconf", "-c", postfix_dir, *flags, *_PARAMS])
            if proc.returncode != 0:
                raise ConfigError(f"{main_cf}: {_error_line(proc)}")
            for name, value in zip(_PARAMS, proc.stdout.splitlines(), strict=False):
                target[name] = value.strip()
        return pc

    def members(self, entries: list[str], domains: list[str]) -> set[str]:
        """The domains (lower-case) that these list entries (expanded) match."""
        found: set[str] = set()
        wanted = {d.lower() for d in domains}
        for entry in entries:
            if entry.startswith("/"):
                found |= wanted & {w.lower() for w in split_list(_read(entry))}
            elif _TABLE.match(entry):
                found |= self.lookup(entry, sorted(wanted))
            elif entry.lower() in wanted:
                found.add(entry.lower())
        return found

    def lookup(self, table: str, keys: list[str]) -> set[str]:
        """The keys a ``type:table`` answers (``postmap -q -``: one process per table)."""
        if not keys:
            return set()
        table = table.removeprefix("proxy:")
        proc = _run(["postmap", "-c", self.postfix_dir, "-q", "-", table], "\n".join(keys) + "\n")
        if proc.returncode not in (0, 1):
            raise ConfigError(f"postmap -q - {table}: {_error_line(proc)}")
        return {line.split("\t", 1)[0].strip().lower() for line in proc.stdout.splitlines()}

    def classes_of(self, domains: list[str]) -> dict[str, list[str]]:
        """domain -> the classes that list it, in Postfix's order."""
        result: dict[str, list[str]] = {d.lower(): [] for d in domains}
        for cls_name in CLASSES:
            for name in self.members(split_list(self.expanded.get(cls_name, "")), domains):
                result.setdefault(name, []).append(cls_name)
        return result


# The classes and the names they usually reference, read in one postconf call each.
_PARAMS = (*CLASSES, "myhostname", "mydomain", "myorigin")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None


def _expand(pc: Postconf, entry: str) -> str:
    """One list entry as Postfix expands it (postconf evaluates it as mydestination)."""
    if "$" not in entry:
        return entry
    proc = _run(
        ["postconf", "-c", pc.postfix_dir, "-o", f"mydestination={entry}", "-hx", "mydestination"]
    )
    if proc.returncode != 0:
        raise ConfigError(f"postconf: {_error_line(proc)}")
    return proc.stdout.strip()


def mydestination_without(pc: Postconf, hosted: list[str]) -> str | None:
    """The ``mydestination`` value with every hosted domain taken out, or None when none
    is there. A name written out, or ``$mydomain``, is removed; a hosted domain that is
    the machine's own name (``$myhostname``) or comes from a table, a file or another
    parameter stops setup with one line naming the domain and the setting."""
    raw = split_list(pc.raw.get("mydestination", ""))
    keep: list[str] = []
    changed = False
    for entry in raw:
        hit = _entry_hits(pc, entry, hosted)
        if not hit:
            keep.append(entry)
            continue
        domain = sorted(hit)[0]
        ref = _REFERENCE.match(entry)
        name = (ref.group(1) or ref.group(2)) if ref else ""
        if not ref and not _TABLE.match(entry) and not entry.startswith("/") and "$" not in entry:
            changed = True  # the name itself
            continue
        if name == "mydomain":
            changed = True
            continue
        if name == "myhostname":
            raise ConfigError(
                f"{domain} is this machine's own mail name (myhostname = "
                f"{pc.expanded.get('myhostname', '')}) and mydestination lists $myhostname: "
                f"Postfix would deliver {domain} to Unix accounts; give the machine another "
                f"name (postconf -e 'myhostname = mx.{domain}') and run setup again"
            )
        raise ConfigError(
            f"{domain} is in mydestination through {entry}: remove it there "
            "(a hosted domain must not be a local Unix domain), then run setup again"
        )
    if not changed:
        return None
    return ", ".join(keep)


def _entry_hits(pc: Postconf, entry: str, hosted: list[str]) -> set[str]:
    return pc.members(split_list(_expand(pc, entry)), hosted)


def conflicts(pc: Postconf, domains: dict[str, str]) -> list[str]:
    """One line per hosted domain (name -> kind) listed in a class not its own, or missing
    from its own class."""
    problems = []
    found = pc.classes_of(list(domains))
    for name, kind in sorted(domains.items()):
        own = OWN_CLASS.get(kind, "")
        listed = found.get(name.lower(), [])
        others = [c for c in listed if c != own]
        if others:
            where = " and ".join([*others, *([own] if own in listed else [])])
            first = listed[0]
            problems.append(f"{name} ({kind}) is in {where}: Postfix uses {first}")
        elif own and own not in listed:
            problems.append(f"{name} ({kind}) is not in {own}")
    return problems
