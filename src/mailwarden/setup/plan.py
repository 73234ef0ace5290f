"""Plan every change, print it, and carry it out.

``build`` only reads (files, ``postconf -n``, the database) and returns a ``Plan``
whose parts are empty when there is nothing to do; ``show`` prints unified diffs and
the commands; ``apply`` makes the changes in a fixed order (mail root, config file,
schema, accounts, Postfix, Dovecot, reloads).
"""

from __future__ import annotations

import difflib
import grp
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from mailwarden.errors import ConfigError
from mailwarden.setup import accounts, classes, configfile, markers, targets
from mailwarden.setup.answers import Answers


@dataclass(frozen=True)
class FileChange:
    path: Path
    old: str | None
    new: str
    mode: int = 0o644
    group: str | None = None


@dataclass
class Plan:
    answers: Answers
    mail_root: bool = False  # create it
    files: list[FileChange] = field(default_factory=list)
    postconf: list[tuple[str, str]] = field(default_factory=list)
    main_cf: tuple[str, str] = ("", "")
    db: list[accounts.Step] = field(default_factory=list)
    share_db: bool = False  # an existing SQLite file: group postfix, modes, WAL

    @property
    def empty(self) -> bool:
        return not (self.mail_root or self.files or self.postconf or self.db or self.share_db)


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
    plan.postconf = targets.changed_settings(targets.main_cf(a, contrib), current)
    # A hosted domain must be in no other Postfix address class: setup owns the three
    # virtual/relay classes (one row, one kind), so only mydestination can still hold it.
    hosted = accounts.hosted_domains(a, settings)
    fixed = classes.mydestination_without(classes.Postconf.read(a.postfix_dir), hosted)
    if fixed is not None:
        plan.postconf.append(("mydestination", fixed))
    if plan.postconf:
        plan.main_cf = targets.preview_main_cf(a.postfix_dir, plan.postconf)
    plan.db = accounts.plan(a, settings)
    plan.share_db = accounts.sharing_needed(a.database_url)
    return plan


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
    for change in plan.files:
        out.write(_diff(change.old, change.new, str(change.path)))
    for key, value in plan.postconf:
        out.write(f"postconf -c {a.postfix_dir} -e '{key} = {value}'\n")
    if plan.postconf:
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
    tmp.write_text(change.new)
    mode = change.mode
    if change.old is not None:  # keep the admin's mode and owner on shared files
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
    for change in plan.files:
        _write(change)
        out.write(f"wrote {change.path}\n")
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
    if plan.files or plan.postconf:
        reload_services(a, out)


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
