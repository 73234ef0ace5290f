"""What Postfix and Dovecot should contain, computed from the answers and contrib/.

Pure functions of (answers, templates) except ``current_main_cf``/``preview_main_cf``,
which ask ``postconf`` about a config directory.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mailwarden.errors import ConfigError
from mailwarden.setup import markers, smarthost
from mailwarden.setup.answers import Answers
from mailwarden.setup.postconf import postconf as _postconf
from mailwarden.setup.postconf import queue_directory
from mailwarden.setup.render import main_cf_settings, normalize, placeholders, render
from mailwarden.store.db import parse_url

SQL_FILE = "dovecot-mailwarden-sql.conf.ext"
# Dovecot 2.4: everything in one file, read after Debian's stock conf.d files.
DOVECOT24_FILE = "conf.d/99-mailwarden.conf"
SUPPORTED_DOVECOT = ("2.3", "2.4")
# Written after the 2.4 contrib file: Debian 13's conf.d/10-mail.conf points homes at
# /home and INBOX at /var/mail; the userdb's home is the Maildir, and INBOX is its root
# ("." as in Dovecot's own maildir default, which Debian's global setting overrides; an
# empty value would make INBOX a ".INBOX" folder that mail is never delivered to).
DOVECOT24_DEBIAN = """
# --- mailwarden setup: undo Debian's conf.d/10-mail.conf for virtual mailboxes ---
mail_home =
mail_inbox_path = .
"""
# Named inside 91-mailwarden-quota-clone.conf already (@DOVECOT_DIR@/...).
DICT_FILE = "dovecot-dict-mailwarden.conf.ext"


def values(a: Answers) -> dict[str, str]:
    return placeholders(
        a.database_url,
        mail_root=a.mail_root,
        uid=a.mail_uid,
        gid=a.mail_gid,
        dovecot_dir=a.dovecot_dir,
        postfix_dir=str(Path(a.postfix_dir) / "mailwarden"),
    )


def postfix_address(spec: str, *, milter: bool = False, queue_dir: str = "") -> str:
    """A mailwarden listen address as Postfix writes it (inet:HOST:PORT or unix:/path).

    A unix socket below ``queue_dir`` is named relative to it (``unix:mailwarden-lmtpd/
    lmtp.sock``): Postfix's daemons run in the queue directory, chrooted or not, so the
    one name works either way (an absolute path would not inside Debian's chroot)."""
    if spec.startswith(("unix:", "local:")):
        path = spec.split(":", 1)[1]
        top = queue_dir.rstrip("/") + "/"
        if queue_dir and path.startswith(top):
            return "unix:" + path[len(top) :]
        return "unix:" + path
    if milter and spec.startswith("inet:") and "@" in spec:
        port, _, host = spec[5:].partition("@")
        return f"inet:{host}:{port}"
    return "inet:" + spec.removeprefix("inet:")


@dataclass(frozen=True)
class SocketDir:
    """A directory setup keeps for a daemon's unix socket: ``uid``:postfix, 0750."""

    path: Path
    uid: int
    gid: int
    what: str
    mode: int = 0o750

    @property
    def ok(self) -> bool:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (self.uid, self.gid, self.mode)

    def describe(self) -> str:
        return f"install -d -o {self.uid} -g {self.gid} -m {self.mode:04o} {self.path}"


def _uid(user: str, fallback: int) -> int:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return fallback


def postfix_gid() -> int:
    try:
        return grp.getgrnam("postfix").gr_gid
    except KeyError:
        raise ConfigError("there is no group postfix: is Postfix installed?") from None


def socket_dirs(a: Answers, queue_dir: str) -> list[SocketDir]:
    """The socket directories setup owns: a unix listen address of lmtpd or the milter
    whose directory is ``<queue_dir>/mailwarden*`` (its defaults). lmtpd's belongs to
    the mail user (what the systemd unit runs it as), the milter's to user mailwarden
    (root when there is none); group postfix lets Postfix in, nobody else."""
    out = []
    for what, spec, uid in (
        ("lmtpd", a.lmtp_listen, a.mail_uid),
        ("milter", a.milter_listen, _uid("mailwarden", 0)),
    ):
        if not spec.startswith("unix:"):
            continue
        parent = Path(spec[5:]).parent
        if parent.parent == Path(queue_dir) and parent.name.startswith("mailwarden"):
            out.append(SocketDir(parent, uid, postfix_gid(), what))
    return out


def main_cf(a: Answers, contrib: Path, queue_dir: str = "") -> dict[str, str]:
    """Every main.cf setting mailwarden owns, with its value."""
    v = values(a)
    wanted: dict[str, str] = {}
    wanted.update(main_cf_settings(render((contrib / "postfix/main.cf.maps").read_text(), v)))
    policy = (contrib / "postfix/main.cf.policy").read_text()
    policy = policy.replace("inet:127.0.0.1:10040", postfix_address(a.policy_listen))
    wanted.update(main_cf_settings(policy))
    wanted.update(main_cf_settings((contrib / "postfix/main.cf.sasl").read_text()))
    lda = main_cf_settings((contrib / "postfix/main.cf.lda").read_text())
    lda["virtual_transport"] = "lmtp:" + postfix_address(a.lmtp_listen, queue_dir=queue_dir)
    wanted.update(lda)
    wanted.update(
        {
            "smtpd_milters": postfix_address(a.milter_listen, milter=True, queue_dir=queue_dir),
            "non_smtpd_milters": "$smtpd_milters",
            "milter_default_action": "tempfail",
            "milter_protocol": "6",
        }
    )
    return {k: normalize(val) for k, val in wanted.items()}


def map_files(a: Answers, contrib: Path) -> dict[Path, str]:
    dialect = parse_url(a.database_url).dialect
    v = values(a)
    out = {}
    for src in sorted((contrib / "postfix" / dialect).glob("*.cf")):
        out[Path(a.postfix_dir) / "mailwarden" / src.name] = render(src.read_text(), v)
    return out


def lda_path() -> str:
    here = Path(sys.executable).parent / "mailwarden-lda"
    return str(here) if here.exists() else shutil.which("mailwarden-lda") or str(here)


def master_cf_block(a: Answers, contrib: Path) -> str:
    text = (contrib / "postfix/master.cf.lda").read_text()
    try:
        user = pwd.getpwuid(a.mail_uid).pw_name
    except KeyError:
        user = "vmail"
    return (
        text.replace("/usr/local/bin/mailwarden-lda", lda_path())
        .replace("/etc/mailwarden/mailwarden.toml", a.config_path)
        .replace("user=vmail:vmail", f"user={user}")
    )


def master_cf(a: Answers, contrib: Path, current: str) -> str:
    return markers.with_block(current, master_cf_block(a, contrib), "master.cf")


def dovecot_version() -> str:
    """``dovecot --version`` (e.g. ``2.4.1-4``); "" when it does not answer."""
    try:
        proc = subprocess.run(
            ["dovecot", "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return ""
    words = proc.stdout.split()
    return words[0] if proc.returncode == 0 and words else ""


def dovecot_series(version: str) -> str:
    """``2.4.1-4`` -> ``2.4``."""
    return ".".join(version.split("-", maxsplit=1)[0].split(".")[:2])


def has_config_version(dovecot_dir: str) -> bool:
    """Whether dovecot.conf sets ``dovecot_config_version`` (a Dovecot 2.4 configuration)."""
    try:
        text = (Path(dovecot_dir) / "dovecot.conf").read_text()
    except OSError:
        return False
    return any(ln.strip().startswith("dovecot_config_version") for ln in text.splitlines())


def dovecot_files(a: Answers, contrib: Path) -> dict[Path, tuple[str, bool]]:
    """path -> (text, shared): shared files get a marker block, others are whole files."""
    dialect = parse_url(a.database_url).dialect
    # Only the SASL listener needs Postfix's queue directory: one postconf call, here.
    sasl_socket = str(Path(queue_directory(a.postfix_dir)) / "private" / "auth")
    v = values(a) | {"@SASL_SOCKET@": sasl_socket}
    d = Path(a.dovecot_dir)
    if dovecot_series(dovecot_version()) == "2.4":
        return {d / DOVECOT24_FILE: (dovecot24_text(a, contrib, v), False)}
    sql = render((contrib / f"dovecot/dovecot-sql.conf.ext.{dialect}").read_text(), v)
    auth = render((contrib / "dovecot/10-mailwarden-auth.conf").read_text(), v)
    auth = auth.replace("/dovecot-sql.conf.ext", f"/{SQL_FILE}")
    quota = render((contrib / "dovecot/90-mailwarden-quota.conf").read_text(), v)
    # quota_clone: Dovecot writes its usage (IMAP deletions too) back to quota_usage.
    dict_map = render(
        (contrib / f"dovecot/dovecot-dict-mailwarden.conf.ext.{dialect}").read_text(), v
    )
    clone = render((contrib / "dovecot/91-mailwarden-quota-clone.conf").read_text(), v)
    # last_login: IMAP/POP3 logins reach mailboxes.last_login through the same dict.
    last_login = render((contrib / "dovecot/92-mailwarden-last-login.conf").read_text(), v)
    sasl = render((contrib / "dovecot/11-mailwarden-sasl.conf").read_text(), v)
    # Drafts, Sent, Trash, Junk created and subscribed at a login (auto = subscribe).
    folders = (contrib / "dovecot/15-mailwarden-mailboxes.conf").read_text()
    return {
        d / SQL_FILE: (sql, False),
        d / DICT_FILE: (dict_map, False),
        d / "conf.d/10-mailwarden-auth.conf": (auth, True),
        d / "conf.d/11-mailwarden-sasl.conf": (sasl, True),
        d / "conf.d/90-mailwarden-quota.conf": (quota, True),
        d / "conf.d/91-mailwarden-quota-clone.conf": (clone, True),
        d / "conf.d/92-mailwarden-last-login.conf": (last_login, True),
        d / "conf.d/15-mailwarden-mailboxes.conf": (folders, True),
    }


def dovecot24_text(a: Answers, contrib: Path, v: dict[str, str]) -> str:
    """contrib's 2.4 file (its version lines dropped when dovecot.conf has them, as a
    second dovecot_config_version is an error), the SASL listener, Debian overrides."""
    text = render((contrib / "dovecot/dovecot-2.4/mailwarden.conf").read_text(), v)
    if has_config_version(a.dovecot_dir):
        text = "".join(
            ln
            for ln in text.splitlines(keepends=True)
            if not ln.startswith(("dovecot_config_version", "dovecot_storage_version"))
        )
    sasl = render((contrib / "dovecot/11-mailwarden-sasl.conf").read_text(), v)
    head = "# Written by 'mailwarden setup' for Dovecot 2.4; re-running setup replaces it.\n"
    return head + text.rstrip("\n") + "\n\n" + sasl.rstrip("\n") + "\n" + DOVECOT24_DEBIAN


def current_main_cf(postfix_dir: str) -> dict[str, str]:
    """Explicit main.cf settings (``postconf -n``), whitespace-normalised."""
    if not (Path(postfix_dir) / "main.cf").exists():
        return {}
    out = {}
    for line in _postconf(postfix_dir, "-n").splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            out[key.strip()] = normalize(value)
    return out


def changed_settings(wanted: dict[str, str], current: dict[str, str]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in wanted.items() if current.get(k) != v]


def postconf_x(postfix_dir: str, keys: list[str]) -> None:
    if keys:
        _postconf(postfix_dir, "-X", *keys)


def database_type(postfix_dir: str) -> str:
    """Postfix's ``default_database_type`` (hash on Debian 12, lmdb on newer builds)."""
    if not shutil.which("postconf"):
        return "hash"
    return _postconf(postfix_dir, "-h", "default_database_type").strip() or "hash"


def indexed_file(source: Path, db_type: str) -> Path:
    """The file ``postmap TYPE:source`` writes (``source.db`` for hash)."""
    return source.with_name(source.name + smarthost.DB_SUFFIX.get(db_type, ".db"))


def postmap(postfix_dir: str, spec: str, secret: bool) -> None:
    """``postmap TYPE:FILE``; a secret map's output is created 0600 (umask) and kept so."""
    proc = subprocess.run(
        ["postmap", "-c", postfix_dir, spec],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        umask=0o077 if secret else -1,
    )
    if proc.returncode != 0:
        line = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise ConfigError(f"postmap {spec}: {line}")
    if secret:
        db_type, _, source = spec.partition(":")
        os.chmod(indexed_file(Path(source), db_type), 0o600)


def postconf_e(postfix_dir: str, settings: list[tuple[str, str]]) -> None:
    path = Path(postfix_dir) / "main.cf"
    if not path.exists():
        path.write_text("# main.cf created by 'mailwarden setup'\n")
    if settings:
        _postconf(postfix_dir, "-e", *(f"{k} = {v}" for k, v in settings))


def preview_main_cf(
    postfix_dir: str, settings: list[tuple[str, str]], remove: list[str] | None = None
) -> tuple[str, str]:
    """(old, new) main.cf text: postconf -e run on a copy in a temporary directory."""
    src = Path(postfix_dir) / "main.cf"
    old = src.read_text() if src.exists() else ""
    with tempfile.TemporaryDirectory(prefix="mailwarden-setup.") as tmp:
        if src.exists():
            (Path(tmp) / "main.cf").write_text(old)
        if (Path(postfix_dir) / "master.cf").exists():
            shutil.copy(Path(postfix_dir) / "master.cf", Path(tmp) / "master.cf")
        postconf_e(tmp, settings)
        postconf_x(tmp, remove or [])
        new = (Path(tmp) / "main.cf").read_text()
    return old, new
