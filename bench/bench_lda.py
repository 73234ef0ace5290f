"""Benchmark the delivery agent (not a test). Run as root from the repository:

    PYTHONPATH=src python3 bench/bench_lda.py [--messages 400] [--pipe-runs 30]

Reports, in one run on the same machine and disk:
  * LMTP deliveries/s at 1, 4 and 16 concurrent sessions (one recipient per message,
    ~2 KiB, each session to its own mailbox) for ``mailwarden lmtpd`` and Dovecot's
    LMTP (``mail_fsync = optimized``), next to a raw write+fsync+link+fsync(dir) loop;
  * wall time per message of ``mailwarden-lda`` (in-process, no lmtpd running and via
    hand-over to lmtpd) next to ``python3 -c pass`` and ``dovecot-lda``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests import servers  # noqa: E402
from tests.conftest import Cli, write_config  # noqa: E402

MSG = b"From: a@x.test\r\nSubject: bench\r\n\r\n" + (b"x" * 76 + b"\r\n") * 25
PY = "/opt/mailwarden-test/venv/bin/python"


def lmtp_rate(connect: dict[str, object], users: list[str], sessions: int, total: int) -> float:
    per = total // sessions

    def worker(i: int) -> None:
        client = smtplib.LMTP(**connect)  # type: ignore[arg-type]
        for _ in range(per):
            client.sendmail("a@x.test", [users[i % len(users)]], MSG)
        client.quit()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(sessions)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * sessions / (time.perf_counter() - t0)


def cpu_seconds(pid: int) -> float:
    """User+system CPU of ``pid`` and its children still running (lmtpd's workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def lmtp_rounds(
    mw_at: dict[str, object],
    dv_at: dict[str, object],
    pid: int,
    raw_dir: Path,
    users: list[str],
    sessions: int,
    args: argparse.Namespace,
) -> tuple[float, float, float, float]:
    """Medians over ``--rounds`` of mailwarden, Dovecot and the raw loop, taken in turn
    (a busy minute on this shared machine hits all three alike); and lmtpd's CPU
    milliseconds per message (parent and workers, all rounds)."""
    mw, dv, raw = [], [], []
    cpu0 = cpu_seconds(pid)
    for r in range(args.rounds):
        mw.append(lmtp_rate(mw_at, users, sessions, args.messages))
        dv.append(lmtp_rate(dv_at, users, sessions, args.messages))
        raw.append(raw_rate(raw_dir / str(r), sessions, args.messages))
    cpu = (cpu_seconds(pid) - cpu0) * 1000 / (args.messages // sessions * sessions * args.rounds)
    # mw's CPU is read around the whole loop: Dovecot and the raw loop add none to it
    return statistics.median(mw), statistics.median(dv), statistics.median(raw), cpu


def raw_rate(base: Path, sessions: int, total: int) -> float:
    per = total // sessions

    def worker(i: int) -> None:
        d = base / f"raw{sessions}-{i}"
        for sub in ("tmp", "new", "cur"):
            (d / sub).mkdir(parents=True)
        data = MSG.replace(b"\r\n", b"\n")
        for n in range(per):
            tmp, new = d / "tmp" / str(n), d / "new" / str(n)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.link(tmp, new)
            os.unlink(tmp)
            dfd = os.open(d / "new", os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(sessions)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * sessions / (time.perf_counter() - t0)


def walls(
    cmds: dict[str, tuple[list[str], dict[str, str] | None, int]], runs: int
) -> dict[str, float]:
    """Median wall time in ms of each ``label: (argv, env, uid)``, the message on stdin.

    Round-robin (one run of each command in turn) so that a busy minute on this shared
    machine hits every command alike and the ratios stay comparable.
    """
    times: dict[str, list[float]] = {label: [] for label in cmds}
    stdin = MSG.replace(b"\r\n", b"\n")
    for _ in range(runs):
        for label, (argv, env, user) in cmds.items():
            t0 = time.perf_counter()
            p = subprocess.run(
                argv, input=stdin, capture_output=True, env=env, user=user, check=False
            )
            times[label].append(time.perf_counter() - t0)
            if p.returncode != 0:
                raise RuntimeError(f"{label} exited {p.returncode}: {p.stdout!r} {p.stderr!r}")
    return {label: statistics.median(t) * 1000 for label, t in times.items()}


def pipe_times(
    base: Path, src: Path, cfg: Path, cfg_nohandover: Path, dovecot_conf: Path, runs: int
) -> None:
    """Wall time per message of ``mailwarden-lda`` as vmail, started as Postfix does.

    The LDA runs as installed: ``bin/mailwarden-lda`` under the venv's interpreter
    (pip's ``#!python`` rewrite), the package from the byte-compiled copy of ``src/``.
    The ``-IS`` variant needs the package in ``<prefix>/lib/pythonX.Y/site-packages``
    next to its interpreter: a symlinked prefix stands in for the venv.
    """
    launcher = base / "mailwarden-lda"
    shutil.copy(REPO / "bin" / "mailwarden-lda", launcher)
    os.chmod(launcher, 0o755)
    prefix = base / "prefix"
    lib = prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    lib.mkdir(parents=True)
    (prefix / "bin").mkdir()
    (prefix / "bin" / "python3").symlink_to(PY)
    (lib / "site-packages").symlink_to(src)
    subprocess.run(["chmod", "-R", "a+rX", str(prefix)], check=True)
    env = dict(os.environ, PYTHONPATH=str(src))
    lda = [str(launcher), "--sender", "a@x.test", "--recipient", "pipe@example.test"]
    dlda = "/usr/lib/dovecot/dovecot-lda"
    ms = walls(
        {
            "python3 -c pass": ([PY, "-c", "pass"], None, 5000),
            "python3 -IS -c pass": ([PY, "-IS", "-c", "pass"], None, 5000),
            "in-process": ([PY, *lda, "--config", str(cfg_nohandover)], env, 5000),
            "hand-over": ([PY, *lda, "--config", str(cfg)], env, 5000),
            "hand-over -IS": (
                [str(prefix / "bin" / "python3"), "-IS", *lda, "--config", str(cfg)],
                None,
                5000,
            ),
            "dovecot-lda": (
                [dlda, "-c", str(dovecot_conf), "-d", "pipe@example.test", "-f", "a@x.test"],
                None,
                0,
            ),
        },
        runs,
    )
    d = ms["dovecot-lda"]
    print(f"\npipe LDA wall time per message (median of {runs}, round-robin, as vmail)")
    print(f"  python3 -c pass                  {ms['python3 -c pass']:7.1f} ms")
    print(f"  python3 -IS -c pass              {ms['python3 -IS -c pass']:7.1f} ms")
    for label in ("in-process", "hand-over", "hand-over -IS"):
        print(
            f"  mailwarden-lda {label:<17} {ms[label]:7.1f} ms  ({ms[label] / d:.2f}x dovecot-lda)"
        )
    print(f"  dovecot-lda                      {d:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=400, help="0 = skip the LMTP part")
    ap.add_argument("--workers", type=int, default=1, help="lmtpd --workers")
    ap.add_argument("--rounds", type=int, default=3, help="LMTP rounds per concurrency (median)")
    ap.add_argument("--pipe-runs", type=int, default=30, help="0 = skip the pipe LDA part")
    args = ap.parse_args()
    base = servers.make_workdir("mw-bench-")
    root = base / "vmail"
    root.mkdir()
    os.chown(root, 5000, 5000)
    src = base / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    # Byte-compile as ``pip install`` does: the pipe LDA runs as vmail, which cannot
    # write __pycache__ into this root-owned copy and would otherwise compile every run.
    subprocess.run([PY, "-m", "compileall", "-q", str(src)], check=True)
    subprocess.run(["chmod", "-R", "a+rX", str(src), str(base)], check=True)
    url = f"sqlite:///{base}/db/mail.sqlite"
    (base / "db").mkdir()
    sock = base / "lmtp.sock"
    cfg = write_config(
        base / "c.toml",
        url,
        root,
        f'[lda]\nlmtp_listen = ["unix:{sock}"]\nmetrics_dir = "{base}/metrics"\n',
    )
    cfg_nohandover = write_config(
        base / "c2.toml", url, root, f'[lda]\nlmtp_listen = []\nmetrics_dir = "{base}/metrics"\n'
    )
    cli = Cli(cfg, url)
    cli.ok("db", "init")
    cli.ok("domain", "add", "example.test")
    users = [f"u{i}@example.test" for i in range(16)]
    for u in [*users, "pipe@example.test"]:
        cli.ok("user", "add", "--password-stdin", u, stdin="pw\n")
    subprocess.run(["chown", "-R", "5000:5000", str(base / "db")], check=True)
    os.chmod(base / "db" / "mail.sqlite", 0o666)

    text = (REPO / "contrib/dovecot/dovecot-sql.conf.ext.sqlite").read_text()
    for k, v in {
        "@SQLITE_PATH@": f"{base}/db/mail.sqlite",
        "@MAIL_ROOT@": f"{base}/dvmail",
        "@MAIL_UID@": "5000",
        "@MAIL_GID@": "5000",
    }.items():
        text = text.replace(k, v)
    (base / "dvmail").mkdir()
    os.chown(base / "dvmail", 5000, 5000)
    dovecot = servers.Dovecot(
        base,
        text,
        base / "dvmail",
        extra_conf="mail_fsync = optimized\nlmtp_save_to_detail_mailbox = no\n",
    )
    dovecot.start()
    env = dict(os.environ, PYTHONPATH=str(src))
    lmtpd = subprocess.Popen(
        [sys.executable, "-m", "mailwarden", "--config", str(cfg), "lmtpd", "--metrics", "none"]
        + (["--workers", str(args.workers)] if args.workers != 1 else []),
        env=env,
        stdout=open(base / "lmtpd.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    servers.wait_unix_socket(sock, time.monotonic() + 20)
    try:
        print(
            f"LMTP deliveries/s ({args.messages} messages of {len(MSG)} bytes per run,"
            f" median of {args.rounds} rounds)"
        )
        print(
            f"{'sessions':>8} {'mailwarden':>11} {'dovecot':>9} {'raw loop':>9} {'mw/dovecot':>11}"
            f" {'mw CPU ms/msg':>14}"
        )
        for n in (1, 4, 16) if args.messages > 0 else ():  # 0: pipe LDA only
            mw, dv, raw, cpu = lmtp_rounds(
                {"host": str(sock)},
                {"host": "127.0.0.1", "port": dovecot.lmtp_port},
                lmtpd.pid,
                base / "raw",
                users,
                n,
                args,
            )
            print(f"{n:>8} {mw:>11.0f} {dv:>9.0f} {raw:>9.0f} {mw / dv:>11.2f} {cpu:>14.2f}")
        if args.pipe_runs > 0:
            pipe_times(base, src, cfg, cfg_nohandover, dovecot.conf_path, args.pipe_runs)
    finally:
        lmtpd.send_signal(signal.SIGTERM)
        lmtpd.wait(30)
        dovecot.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
