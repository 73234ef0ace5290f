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


def wall(
    argv: list[str],
    runs: int,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    user: int | None = None,
) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(argv, input=stdin, capture_output=True, env=env, user=user, check=False)
        times.append(time.perf_counter() - t0)
        if p.returncode != 0:
            raise RuntimeError(f"{argv[0]} exited {p.returncode}: {p.stdout!r} {p.stderr!r}")
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--pipe-runs", type=int, default=30)
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
        [sys.executable, "-m", "mailwarden", "--config", str(cfg), "lmtpd", "--metrics", ""],
        env=env,
        stdout=open(base / "lmtpd.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    servers.wait_unix_socket(sock, time.monotonic() + 20)
    try:
        print(f"LMTP deliveries/s ({args.messages} messages of {len(MSG)} bytes per run)")
        print(
            f"{'sessions':>8} {'mailwarden':>11} {'dovecot':>9} {'raw loop':>9} {'mw/dovecot':>11}"
        )
        for n in (1, 4, 16):
            mw = lmtp_rate({"host": str(sock)}, users, n, args.messages)
            dv = lmtp_rate(
                {"host": "127.0.0.1", "port": dovecot.lmtp_port}, users, n, args.messages
            )
            raw = raw_rate(base / "raw", n, args.messages)
            print(f"{n:>8} {mw:>11.0f} {dv:>9.0f} {raw:>9.0f} {mw / dv:>11.2f}")
        runs = args.pipe_runs
        lda = [
            PY,
            "-m",
            "mailwarden.lda.pipe",
            "--sender",
            "a@x.test",
            "--recipient",
            "pipe@example.test",
        ]
        raw_msg = MSG.replace(b"\r\n", b"\n")
        bare = wall([PY, "-c", "pass"], runs, user=5000)
        inproc = wall([*lda, "--config", str(cfg_nohandover)], runs, raw_msg, env, user=5000)
        handover = wall([*lda, "--config", str(cfg)], runs, raw_msg, env, user=5000)
        dlda = wall(
            [
                "/usr/lib/dovecot/dovecot-lda",
                "-c",
                str(dovecot.conf_path),
                "-d",
                "pipe@example.test",
                "-f",
                "a@x.test",
            ],
            runs,
            raw_msg,
            user=0,
        )
        print(f"\npipe LDA wall time per message (median of {runs}, as vmail)")
        print(f"  python3 -c pass            {bare:7.1f} ms")
        print(f"  mailwarden-lda in-process  {inproc:7.1f} ms  ({inproc / dlda:.2f}x dovecot-lda)")
        print(
            f"  mailwarden-lda hand-over   {handover:7.1f} ms  ({handover / dlda:.2f}x dovecot-lda)"
        )
        print(f"  dovecot-lda                {dlda:7.1f} ms")
    finally:
        lmtpd.send_signal(signal.SIGTERM)
        lmtpd.wait(30)
        dovecot.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
