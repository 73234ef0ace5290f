"""Plan every change, print it, and carry it out.

``build`` only reads (files, ``postconf -n``, the database) and returns a ``Plan``
whose parts are empty when there is nothing to do; ``show`` prints unified diffs and
the commands; ``apply`` makes the changes in a fixed order (mail root, socket
directories, config file, schema, accounts, Postfix, Dovecot, reloads).

Socket directories (``targets.socket_dirs``): lmtpd's and the milter's unix sockets live
in ``<queue_directory>/mailwarden-lmtpd`` and ``.../mailwarden-milter``, each
<daemon user>:postfix mode 0750, so only Postfix (and root) can connect.
"""

from __future__ import annotations

import contextlib
import difflib
import grp
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from mailwarden.errors import ConfigError, UsageError
from mailwarden.setup import accounts, classes, configfile, markers, postconf, smarthost, targets
from mailwarden.setup.answers import Answers


@dataclass(frozen=True)
class FileChange:
    path: Path
    old: str | None
    new: str
    mode: int = 0o644
    group: str | None = None
    secret: bool = False  # 0600 root always; shown masked (smarthost.mask)


@dataclass
class Plan:
    answers: Answers
    mail_root: bool = False  # create it
    files: list[FileChange] = field(default_factory=list)
    postconf: list[tuple[str, str]] = field(default_factory=list)
    main_cf: tuple[str, str] = ("", "")
    db: list[accounts.Step] = field(default_factory=list)
    share_db: bool = False  # an existing SQLite file: group postfix, modes, WAL
    socket_dirs: list[targets.SocketDir] = field(default_factory=list)  # to create or fix
    postmap: list[tuple[str, bool]] = field(default_factory=list)  # (type:path, secret)
    postconf_remove: list[str] = field(default_factory=list)  # postconf -X
    remove_files: list[Path] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.mail_root
            or self.files
            or self.postconf
            or self.db
            or self.share_db
            or self.socket_dirs
            or self.postmap
            or self.postconf_remove
            or self.remove_files
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _file(path: Path, new: str, mode: int = 0o644, group: str | None = None) -> FileChange:
    return FileChange(path, _read(path), new, mode, group)


def build(a: Answers, contrib: Path) -> Plan:
    plan = Plan(a)
    plan.mail_root = not os.path.isdir(a.mail_root)
    queue_dir = postconf.queue_directory(a.postfix_dir)
    plan.socket_dirs = [d for d in targets.socket_dirs(a, queue_dir) if not d.ok]
    settings = configfile.settings_for(a)
    candidates = [_file(Path(a.config_path), configfile.text(settings), 0o640)]
    for path, text in targets.map_files(a, contrib).items():
        candidates.append(_file(path, text, 0o640, "postfix"))
    master = Path(a.postfix_dir) / "master.cf"
    candidates.append(_file(master, targets.master_cf(a, contrib, _read(master) or "")))
    for path, (text, shared) in targets.dovecot_files(a, contrib).items():
        if shared:
            candidates.append(_file(path, markers.with_block(_read(path) or "", text, str(path))))
        else:
            candidates.append(_file(path, text, 0o640, "dovecot"))
    plan.files = [c for c in candidates if c.old != c.new]
    current = targets.current_main_cf(a.postfix_dir)
    plan.postconf = targets.changed_settings(targets.main_cf(a, contrib, queue_dir), current)
    # A hosted domain must be in no other Postfix address class: setup owns the three
    # virtual/relay classes (one row, one kind), so only mydestination can still hold it.
    hosted = accounts.hosted_domains(a, settings)
    fixed = classes.mydestination_without(classes.Postconf.read(a.postfix_dir), hosted)
    if fixed is not None:
        plan.postconf.append(("mydestination", fixed))
    plan_smarthost(plan, current)
    if plan.postconf or plan.postconf_remove:
        plan.main_cf = targets.preview_main_cf(a.postfix_dir, plan.postconf, plan.postconf_remove)
    plan.db = accounts.plan(a, settings)
    plan.share_db = accounts.sharing_needed(a.database_url)
    return plan


def _private(path: Path) -> bool:
    """0600, owned by root (by us when not run as root)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return st.st_mode & 0o7777 == 0o600 and st.st_uid == os.geteuid()


def _indexed(source: Path, db_type: str, secret: bool) -> bool:
    """postmap's output exists, is not older than the source (and is 0600 if secret)."""
    db = targets.indexed_file(source, db_type)
    try:
        fresh = db.stat().st_mtime >= source.stat().st_mtime
    except FileNotFoundError:
        return False
    return fresh and (not secret or _private(db))


def plan_smarthost(plan: Plan, current: dict[str, str]) -> None:
    """The relayhost, its SASL password map and TLS policy (setup.smarthost); with
    ``--relayhost none``, what takes them out again. UsageError before anything changes
    when the password is needed and was not given."""
    a, sh = plan.answers, plan.answers.smarthost
    if sh is None:
        return
    db_type = targets.database_type(a.postfix_dir)
    sources = smarthost.paths(a.postfix_dir)
    if not sh.relayhost:
        settings, plan.postconf_remove = smarthost.removal(db_type, a.postfix_dir, current)
        plan.postconf += settings
        for src in sources:
            plan.remove_files += [
                f for f in (src, targets.indexed_file(src, db_type)) if f.exists()
            ]
        return
    password = sh.password or smarthost.current_password(a.postfix_dir, sh.relayhost, sh.user)
    if password is None:
        raise UsageError(
            f"no password for {sh.user} at {sh.relayhost} yet: give --relayhost-password-stdin"
        )
    texts = (
        smarthost.passwd_map(sh.relayhost, sh.user, password),
        smarthost.tls_map(sh.relayhost, sh.tls, sh.cafile),
    )
    for src, text, secret in zip(sources, texts, (True, False), strict=True):
        change = FileChange(src, _read(src), text, 0o600 if secret else 0o644, secret=secret)
        if change.old != change.new or (secret and not _private(src)):
            plan.files.append(change)
        if change.old != change.new or not _indexed(src, db_type, secret):
            plan.postmap.append((f"{db_type}:{src}", secret))
    wanted = smarthost.wanted(sh.relayhost, db_type, a.postfix_dir, current)
    plan.postconf += targets.changed_settings(wanted, current)


def _shown(change: FileChange) -> str:
    """The diff of a file, a secret one masked (a changed password is only named)."""
    if not change.secret:
        return _diff(change.old, change.new, str(change.path))
    old = None if change.old is None else smarthost.mask(change.old)
    text = _diff(old, smarthost.mask(change.new), str(change.path))
    if not text and change.old != change.new:
        text = f"# {change.path}: the password changes (not shown)\n"
    if not text:
        text = f"chown root:root {change.path}; chmod 0600 {change.path}\n"
    return text


def _diff(old: str | None, new: str, path: str) -> str:
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=path if old is not None else "/dev/null",
        tofile=path,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def show(plan: Plan, out: TextIO) -> None:
    a = plan.answers
    if plan.empty:
        out.write("mailwarden setup: nothing to change\n")
        return
    if plan.mail_root:
        out.write(f"mkdir -p {a.mail_root}; chown {a.mail_uid}:{a.mail_gid} {a.mail_root}\n")
    for d in plan.socket_dirs:
        out.write(f"{d.describe()}   # {d.what}'s socket: only Postfix may connect\n")
    for change in plan.files:
        out.write(_shown(change))
    for spec, _secret in plan.postmap:
        out.write(f"postmap -c {a.postfix_dir} {spec}\n")
    for key, value in plan.postconf:
        out.write(f"postconf -c {a.postfix_dir} -e '{key} = {value}'\n")
    if plan.postconf_remove:
        out.write(f"postconf -c {a.postfix_dir} -X {' '.join(plan.postconf_remove)}\n")
    for path in plan.remove_files:
        out.write(f"rm {path}\n")
    if plan.postconf or plan.postconf_remove:
        main_cf = str(Path(a.postfix_dir) / "main.cf")
        out.write(_diff(plan.main_cf[0], plan.main_cf[1], main_cf))
    for step in plan.db:
        out.write(f"database: {step.describe}\n")
    if plan.share_db:
        out.write(
            "database: let group postfix read it (directory 2770, file 0660 root:postfix) "
            "and switch it to WAL mode\n"
        )


def _write(change: FileChange) -> None:
    change.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = change.path.with_name(f".{change.path.name}.mailwarden-setup")
    # Created 0600: a secret is never readable by others, not even for a moment.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(change.new)
    mode = change.mode
    if change.secret:
        os.chown(tmp, os.geteuid(), os.getegid())
    elif change.old is not None:  # keep the admin's mode and owner on shared files
        st = change.path.stat()
        mode = st.st_mode & 0o7777
        os.chown(tmp, st.st_uid, st.st_gid)
    elif change.group is not None:
        try:
            os.chown(tmp, 0, grp.getgrnam(change.group).gr_gid)
        except (KeyError, PermissionError):
            mode = 0o644 if change.mode & 0o040 else change.mode
    os.chmod(tmp, mode)
    os.replace(tmp, change.path)


def apply(plan: Plan, out: TextIO, cli: Callable[[list[str]], str]) -> None:
    a = plan.answers
    if plan.mail_root:
        os.makedirs(a.mail_root, mode=0o750, exist_ok=True)
        os.chown(a.mail_root, a.mail_uid, a.mail_gid)
    for d in plan.socket_dirs:
        make_socket_dir(d)
        out.write(f"socket directory {d.path} ({d.what}): {d.uid}:{d.gid} {d.mode:04o}\n")
    for change in plan.files:
        _write(change)
        out.write(f"wrote {change.path}\n")
    for spec, secret in plan.postmap:
        targets.postmap(a.postfix_dir, spec, secret)
        out.write(f"postmap {spec}\n")
    for step in plan.db:
        text = cli(step.argv)
        for line in text.splitlines():
            if line.startswith("password:"):
                out.write(
                    f"  {step.subject} {line}  (shown once; change: mailwarden user passwd)\n"
                )
    accounts.share_sqlite(a.database_url)
    if plan.postconf:
        targets.postconf_e(a.postfix_dir, plan.postconf)
        out.write(f"postconf: set {', '.join(k for k, _ in plan.postconf)}\n")
    if plan.postconf_remove:
        targets.postconf_x(a.postfix_dir, plan.postconf_remove)
        out.write(f"postconf: removed {', '.join(plan.postconf_remove)}\n")
    for path in plan.remove_files:
        path.unlink(missing_ok=True)
        out.write(f"removed {path}\n")
    if plan.files or plan.postconf or plan.postconf_remove or plan.postmap:
        reload_services(a, out)


def make_socket_dir(d: targets.SocketDir) -> None:
    """Create (or fix) a socket directory; never through a symlink."""
    os.makedirs(d.path.parent, mode=0o755, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(d.path, 0o700)
    fd = os.open(d.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, d.uid, d.gid)
        os.fchmod(fd, d.mode)
    finally:
        os.close(fd)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def reload_services(a: Answers, out: TextIO) -> None:
    """postfix reload / doveadm reload, each only when that server runs."""
    if shutil.which("postfix") and _run(["postfix", "-c", a.postfix_dir, "status"]).returncode == 0:
        proc = _run(["postfix", "-c", a.postfix_dir, "reload"])
        if proc.returncode != 0:
            raise ConfigError(f"postfix reload failed: {proc.stderr.strip()}")
        out.write("reloaded postfix\n")
    conf = str(Path(a.dovecot_dir) / "dovecot.conf")
    base = _run(["doveconf", "-c", conf, "-h", "base_dir"]).stdout.strip()
    if base and _pid_alive(Path(base) / "master.pid"):
        proc = _run(["doveadm", "-c", conf, "reload"])
        if proc.returncode != 0:
            raise ConfigError(f"doveadm reload failed: {proc.stderr.strip()}")
        out.write("reloaded dovecot\n")


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True
