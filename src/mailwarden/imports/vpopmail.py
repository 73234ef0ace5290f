"""vpopmail (H-Sphere's qmail bundle) -> ``plan.Source``: ``mailwarden import vpopmail DIR``.

``DIR`` is vpopmail's home (``/hsphere/local/var/vpopmail``, ``/home/vpopmail``). Every
``domains/<domain>/`` (or ``domains/<n>/<domain>/`` of big installations) with a
``vpasswd`` is a local domain; a domain directory that is a symlink to another one is an
alias domain (what ``vaddaliasdomain`` makes).

- ``vpasswd``: ``user:crypted:uid:gid:gecos:dir:quota:clearpass``. The hash goes through
  ``hashes.classify``; when it is not one Dovecot verifies but the clear-text field is
  set, that password is hashed anew. Quota: ``NOQUOTA`` = 0 (unlimited), ``1000000S`` bytes,
  ``,100C`` messages, a plain number is bytes, ``K``/``M``/``G`` suffixes are accepted.
  gid flag bits (no POP, no IMAP, ...) are not imported (note).
- ``.qmail-<local>`` in the domain directory (``:`` stands for ``.`` in the name):
  ``&addr`` or ``addr`` lines -> alias destinations; a Maildir path of a mailbox of the
  domain -> that mailbox; ``|program`` and other paths are reported, not imported.
- ``<user dir>/.qmail`` -> the mailbox's forwards (its own Maildir line = keep a copy).
- ``.qmail-default`` with ``vdelivermail '' X``: ``bounce-no-mailbox`` = no catch-all,
  ``delete`` = catch-all to discard, an address or a mailbox directory = catch-all to it.

Pure except for reading the files under ``DIR``. Who calls it: ``admin/imports.py``.
Errors: ``UsageError`` when ``DIR/domains`` does not exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from mailwarden.errors import UsageError
from mailwarden.imports import hashes
from mailwarden.imports import plan as p

_QUOTA = re.compile(r"^(\d+)([KMG]?)S?$", re.I)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_ADDRESS = re.compile(r"^[^\s@]+@[^\s@]+$")


def read(home: Path) -> p.Source:
    """The source rows of the vpopmail tree at ``home``."""
    root = home / "domains"
    if not root.is_dir():
        raise UsageError(f"{root} does not exist: give vpopmail's home directory")
    src = p.Source()
    dirs = _domain_dirs(root)
    real = {d.resolve(): d.name.lower() for d in dirs if not d.is_symlink()}
    for ddir in dirs:
        name = ddir.name.lower()
        if ddir.is_symlink():
            target = real.get(ddir.resolve())
            if target:
                src.domains.append(p.Domain(name, "alias", alias_of=target))
            else:
                src.notes.append(f"domain {name}: symlink to {ddir.resolve()}, not a domain here")
            continue
        src.domains.append(p.Domain(name))
        _read_domain(ddir, name, src)
    return src


def _domain_dirs(root: Path) -> list[Path]:
    found = []
    for entry in sorted(root.iterdir()):
        if (entry / "vpasswd").is_file():
            found.append(entry)
        elif entry.is_dir() and not entry.is_symlink() and entry.name.isdigit():
            found += [e for e in sorted(entry.iterdir()) if (e / "vpasswd").is_file()]
    return found


def parse_quota(text: str) -> tuple[int, int]:
    """(bytes, messages) of a vpasswd quota field; 0 = unlimited."""
    text = text.strip()
    if not text or text.upper() == "NOQUOTA":
        return 0, 0
    size, messages = 0, 0
    for raw in text.split(","):
        part = raw.strip()
        if part.upper().endswith("C") and part[:-1].isdigit():
            messages = int(part[:-1])
        elif m := _QUOTA.match(part):
            size = int(m.group(1)) * _UNITS[m.group(2).upper()]
        else:
            raise ValueError(f"quota {text!r}")
    return size, messages


def _read_domain(ddir: Path, domain: str, src: p.Source) -> None:
    homes: dict[str, str] = {}  # mailbox directory -> address
    for lineno, line in enumerate((ddir / "vpasswd").read_text(errors="replace").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        box = _vpasswd_line(line, domain, f"{ddir / 'vpasswd'}:{lineno}", src)
        if box is not None:
            src.mailboxes.append(box)
            homes[box.old_maildir.rstrip("/").removesuffix("/Maildir")] = box.address
    for box in list(src.mailboxes):
        if box.address.endswith("@" + domain) and box.old_maildir:
            _user_qmail(Path(box.old_maildir), box.address, homes, src)
    for qmail in sorted(ddir.glob(".qmail-*")):
        _domain_qmail(qmail, domain, homes, src)


def _vpasswd_line(line: str, domain: str, where: str, src: p.Source) -> p.Mailbox | None:
    fields = line.split(":")
    if len(fields) < 7:
        src.notes.append(f"{where}: not a vpasswd line (user:crypted:uid:gid:gecos:dir:quota)")
        return None
    user, crypted, _uid, gid, gecos, home, quota = fields[:7]
    clear = fields[7] if len(fields) > 7 else ""
    addr = f"{user.lower()}@{domain}"
    pw = hashes.classify(crypted)
    if isinstance(pw, hashes.Unsupported) and clear:
        pw = hashes.Clear(clear)
    try:
        size, messages = parse_quota(quota)
    except ValueError:
        src.notes.append(f"{where}: {addr}: quota {quota!r} not understood, imported as unlimited")
        size, messages = 0, 0
    if gid.strip() not in ("", "0"):
        src.notes.append(f"{addr}: vpopmail flags (gid {gid}) are not imported")
    return p.Mailbox(addr, pw, name=gecos, quota_bytes=size, quota_messages=messages,
                     old_maildir=home.rstrip("/") + "/Maildir/")  # fmt: skip


def _dest(line: str, homes: dict[str, str]) -> str | None:
    """The address a .qmail delivery line names, or None for what we cannot import."""
    if line.startswith("&"):
        line = line[1:].strip()
    if _ADDRESS.match(line):
        return line.lower()
    if line.startswith("/"):
        return homes.get(line.rstrip("/").removesuffix("/Maildir"))
    return None


def _lines(path: Path) -> list[str]:
    text = path.read_text(errors="replace")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _user_qmail(mdir: Path, addr: str, homes: dict[str, str], src: p.Source) -> None:
    path = mdir.parent / ".qmail"
    if not path.is_file():
        return
    targets, keep = [], False
    for line in _lines(path):
        dest = addr if line.rstrip("/") in ("./Maildir", "Maildir") else _dest(line, homes)
        if dest == addr:
            keep = True
        elif dest is not None:
            targets.append(dest)
        else:
            src.notes.append(f"{path}: line {line!r} not imported (program or unknown path)")
    if targets:
        src.forwards.append(p.Forward(addr, tuple(dict.fromkeys(targets)), keep_copy=keep))


def _domain_qmail(path: Path, domain: str, homes: dict[str, str], src: p.Source) -> None:
    local = path.name.removeprefix(".qmail-").replace(":", ".").lower()
    if local == "default":
        _default(path, domain, homes, src)
        return
    if local.endswith("-default"):
        src.notes.append(f"{path}: extension catch-all not imported")
        return
    targets = []
    for line in _lines(path):
        dest = _dest(line, homes)
        if dest is None:
            src.notes.append(f"{path}: line {line!r} not imported (program or unknown path)")
        else:
            targets.append(dest)
    if targets:
        src.aliases.append(p.Alias(f"{local}@{domain}", tuple(dict.fromkeys(targets))))


def _default(path: Path, domain: str, homes: dict[str, str], src: p.Source) -> None:
    for line in _lines(path):
        words = shlex.split(line.lstrip("|").strip()) if line.startswith("|") else []
        if words and words[0].endswith("vdelivermail") and len(words) >= 3:
            target = words[2]
            if target in ("bounce-no-mailbox", "bounce"):
                return
            if target == "delete":
                src.aliases.append(p.Alias("@" + domain, ("discard",)))
                return
            dest = _dest(target, homes)
            if dest is not None:
                src.aliases.append(p.Alias("@" + domain, (dest,)))
                return
        src.notes.append(f"{path}: line {line!r} not imported")
