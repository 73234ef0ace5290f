"""mlmmj's list directory, written from the schema: ``<spool>/<domain>/<list>/``.

What it does
    ``create`` lays a list out as ``mlmmj-make-ml`` does (the sub-directories, ``index``,
    the English list texts from Debian's ``/usr/share/mlmmj/text.skel/en``);
    ``write_control`` writes ``control/`` from a ``ListSpec`` (``control_files``, pure);
    ``add_member``/``remove_member`` edit the subscriber files under mlmmj's own lock;
    ``read_members`` reads them back (members who subscribed by mail, or were dropped
    after bouncing, exist only there until ``ops/lists.py`` mirrors them into SQL).

The control files (mlmmj 1.3 TUNABLES)
    ``listaddress``, ``owner``, ``moderators`` (the flagged members, else the owners),
    booleans ``moderated``, ``subonlypost``, ``tocc``; ``relayhost``/``smtpport`` (where
    mlmmj-send hands list mail back to the MTA); ``customheaders`` and ``delheaders``.
    mlmmj 1.3 adds no List-* header itself: ``customheaders`` carries List-Id
    (RFC 2919), List-Post, List-Help, List-Subscribe and List-Unsubscribe (RFC 2369,
    mailto: only, see docs/lists.md for RFC 8058), and ``X-Loop: <list address>``;
    ``delheaders`` drops the List-* headers of an upstream list so a post carries only
    this list's. ``access`` discards a post that already carries this list's X-Loop
    (a loop between two lists ends on its second pass, silently: no reply storm) and
    allows everything else (the later checks, subonlypost and moderation, still apply).

Who calls it: ``ops/lists.py``. Ownership: when run as root, everything created is
chowned to the list user (``[lists] user``): Postfix's pipe runs mlmmj as that user, and
mlmmj refuses a list directory owned by anyone else.

Errors: ``OSError`` from the filesystem (the operation's transaction is then rolled back).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailwarden.config import ListsSettings
from mailwarden.errors import UsageError

TEXT_SKEL = Path("/usr/share/mlmmj/text.skel/en")
SUBDIRS = (
    "incoming",
    "queue",
    "queue/discarded",
    "archive",
    "text",
    "subconf",
    "unsubconf",
    "bounce",
    "control",
    "moderation",
    "subscribers.d",
    "digesters.d",
    "nomailsubs.d",
    "requeue",
)
# member mode -> mlmmj's directory; the first one found wins when reading back.
MODE_DIRS = {"normal": "subscribers.d", "digest": "digesters.d", "nomail": "nomailsubs.d"}
# Headers an upstream list added; this list writes its own (customheaders).
DEL_HEADERS = (
    "List-Id:",
    "List-Post:",
    "List-Help:",
    "List-Subscribe:",
    "List-Unsubscribe:",
    "List-Unsubscribe-Post:",
    "List-Owner:",
    "List-Archive:",
)
BOOLEANS = ("moderated", "subonlypost", "tocc")
ERE_SPECIAL = frozenset(".[]()*+?{}|^$\\")
LOCAL_PART = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ListSpec:
    """What the control files say: the list, its owners and moderators."""

    address: str
    owners: tuple[str, ...]
    moderated: bool = False
    subscribers_only: bool = True
    moderators: tuple[str, ...] = ()
    relay_host: str = "127.0.0.1"
    relay_port: int = 25

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class Spool:
    """Where list directories live and who owns them (from ``[lists]``)."""

    root: Path
    user: str = "mlmmj"
    ids: tuple[int, int] | None = field(default=None, compare=False)  # chown to, as root
    relay_host: str = "127.0.0.1"
    relay_port: int = 25

    @classmethod
    def from_settings(cls, settings: ListsSettings) -> Spool:
        ids = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(settings.user)
            except KeyError:
                raise UsageError(
                    f"[lists] user {settings.user!r} does not exist; create it "
                    "(useradd -r -U -d /var/spool/mlmmj -M -s /usr/sbin/nologin mlmmj)"
                ) from None
            ids = (pw.pw_uid, pw.pw_gid)
        host, port = split_host_port(settings.smtp)
        return cls(Path(settings.spool), settings.user, ids, host, port)

    def spec(
        self,
        address: str,
        owners: Iterable[str],
        *,
        moderated: bool,
        subscribers_only: bool,
        moderators: Iterable[str] = (),
    ) -> ListSpec:
        return ListSpec(
            address,
            tuple(owners),
            moderated,
            subscribers_only,
            tuple(moderators),
            self.relay_host,
            self.relay_port,
        )

    def list_dir(self, address: str) -> Path:
        local, _, domain = address.rpartition("@")
        return self.root / domain / local


def local_part_problem(local: str) -> str | None:
    """Why ``local`` cannot name an mlmmj list (path-safe, no recipient delimiter)."""
    if not LOCAL_PART.match(local):
        return "a list name is letters, digits, '.', '_' and '-' (no '+')"
    return None


def split_host_port(text: str) -> tuple[str, int]:
    """``[lists] smtp``: ``HOST:PORT`` (``[v6]:PORT``) -> (host, port)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"[lists] smtp: {text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def custom_headers(address: str) -> list[str]:
    local, _, domain = address.rpartition("@")
    return [
        f"List-Id: <{local}.{domain}>",
        f"List-Post: <mailto:{address}>",
        f"List-Help: <mailto:{local}+help@{domain}>",
        f"List-Subscribe: <mailto:{local}+subscribe@{domain}>",
        f"List-Unsubscribe: <mailto:{local}+unsubscribe@{domain}>",
        f"X-Loop: {address}",
    ]


def access_rules(address: str) -> list[str]:
    """mlmmj ``access``: discard our own loop, allow the rest (POSIX ERE, case-insensitive)."""
    return [f"discard ^X-Loop: *{ere_escape(address)} *$", "allow"]


def ere_escape(text: str) -> str:
    """``text`` as a literal in a POSIX extended regular expression (regcomp(3))."""
    return "".join("\\" + ch if ch in ERE_SPECIAL else ch for ch in text)


def control_files(spec: ListSpec) -> dict[str, str | None]:
    """The content of each managed ``control/`` file; None = the file must not exist."""
    moderators = spec.moderators or spec.owners
    files: dict[str, str | None] = {
        "listaddress": spec.address + "\n",
        "owner": "".join(o + "\n" for o in spec.owners),
        "moderators": "".join(m + "\n" for m in moderators),
        "moderated": "" if spec.moderated else None,
        "subonlypost": "" if spec.subscribers_only else None,
        "tocc": "",  # posts by Bcc and from an umbrella list are fine: X-Loop stops loops
        "relayhost": spec.relay_host + "\n",
        "smtpport": f"{spec.relay_port}\n",
        "customheaders": "".join(h + "\n" for h in custom_headers(spec.address)),
        "delheaders": "".join(h + "\n" for h in DEL_HEADERS),
        "access": "".join(r + "\n" for r in access_rules(spec.address)),
    }
    return files


def _chown(spool: Spool, path: Path) -> None:
    if spool.ids is not None:
        os.chown(path, *spool.ids, follow_symlinks=False)


def _mkdir(spool: Spool, path: Path) -> None:
    if not path.is_dir():
        path.mkdir(mode=0o750)
        _chown(spool, path)


def create(spool: Spool, spec: ListSpec) -> Path:
    """Lay out the list directory (idempotent) and write its control files."""
    listdir = spool.list_dir(spec.address)
    _mkdir(spool, spool.root)
    _mkdir(spool, listdir.parent)
    _mkdir(spool, listdir)
    for sub in SUBDIRS:
        _mkdir(spool, listdir / sub)
    index = listdir / "index"
    if not index.exists():
        index.touch(0o640)
        _chown(spool, index)
    if TEXT_SKEL.is_dir():
        for text in TEXT_SKEL.iterdir():
            target = listdir / "text" / text.name
            if text.is_file() and not target.exists():
                shutil.copyfile(text, target)
                _chown(spool, target)
    write_control(spool, spec)
    return listdir


def _write(spool: Spool, path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.mailwarden-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    _chown(spool, tmp)
    os.replace(tmp, path)


def write_control(spool: Spool, spec: ListSpec) -> None:
    control = spool.list_dir(spec.address) / "control"
    for name, text in control_files(spec).items():
        path = control / name
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            _write(spool, path, text)


def remove(spool: Spool, address: str) -> Path | None:
    """Move the list directory out of the spool (kept, with its archive): return where."""
    listdir = spool.list_dir(address)
    if not listdir.is_dir():
        return None
    graveyard = spool.root.with_name(spool.root.name + ".removed") / listdir.parent.name
    graveyard.mkdir(parents=True, exist_ok=True, mode=0o750)
    target = graveyard / f"{listdir.name}.{int(time.time())}"
    os.rename(listdir, target)
    return target


@contextlib.contextmanager
def _locked(path: Path, spool: Spool) -> Iterator[int]:
    """The subscriber file, open and locked as mlmmj-sub/mlmmj-unsub lock it (fcntl)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        _chown(spool, path)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _read_fd(fd: int) -> list[str]:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return [ln.strip() for ln in b"".join(chunks).decode("utf-8", "replace").splitlines()]


def _sub_file(spool: Spool, list_address: str, mode: str, member: str) -> Path:
    return spool.list_dir(list_address) / MODE_DIRS[mode] / member[0]


def add_member(spool: Spool, list_address: str, member: str, mode: str) -> None:
    """Subscribe ``member`` in ``mode`` (and out of the other modes)."""
    remove_member(spool, list_address, member, keep=mode)
    with _locked(_sub_file(spool, list_address, mode, member), spool) as fd:
        if member not in _read_fd(fd):
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, (member + "\n").encode())


def remove_member(spool: Spool, list_address: str, member: str, keep: str | None = None) -> bool:
    """Unsubscribe ``member`` from every mode but ``keep``; True if it was found."""
    found = False
    for mode in MODE_DIRS:
        path = _sub_file(spool, list_address, mode, member)
        if mode == keep or not path.exists():
            continue
        with _locked(path, spool) as fd:
            lines = _read_fd(fd)
            if member not in lines:
                continue
            found = True
            kept = "".join(ln + "\n" for ln in lines if ln and ln != member)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, kept.encode())
    return found


def read_members(spool: Spool, list_address: str) -> dict[str, str]:
    """Every subscribed address -> its mode, as mlmmj's files say now."""
    found: dict[str, str] = {}
    listdir = spool.list_dir(list_address)
    for mode, sub in MODE_DIRS.items():
        folder = listdir / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                for line in path.read_text("utf-8", "replace").splitlines():
                    addr = line.strip().lower()
                    if addr and "@" in addr:
                        found.setdefault(addr, mode)
    return found
