"""The pipe LDA's cheap hand-over path: config line scan, raw-socket LMTP client."""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mailwarden import config
from mailwarden.pipe import lda as pipe

SRC = Path(__file__).resolve().parents[2] / "src"


def test_defaults_match_config() -> None:
    assert pipe.DEFAULT_CONFIG == config.DEFAULT_PATH
    assert config.LdaSettings().lmtp_listen == pipe.DEFAULT_LMTP_LISTEN


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("", pipe.DEFAULT_LMTP_LISTEN),
        ('[database]\nurl = "sqlite:////x"\n', pipe.DEFAULT_LMTP_LISTEN),
        ('[lda]\nlmtp_listen = ["unix:/a.sock", "h:24"]\n', ("unix:/a.sock", "h:24")),
        ("[lda]  # c\n  lmtp_listen='/x.sock' # c\n", ("/x.sock",)),
        ("[lda]\nlmtp_listen = []\n", ()),
        ('[lda]\nlmtp_listen = [ "unix:/a", ]\n', ("unix:/a",)),
        ('[mail]\nlmtp_listen = ["unix:/no"]\n[lda]\nsubmit = "smtp"\n', pipe.DEFAULT_LMTP_LISTEN),
        ('[lda]\nlmtp_listen = [\n  "unix:/a",\n]\n', None),  # multi-line array
        ('[lda]\nlmtp_listen = ["unix:/a\\\\b"]\n', None),  # escape
        ('lda.lmtp_listen = ["unix:/a"]\n', None),  # dotted key
        ('lda = { lmtp_listen = ["unix:/a"] }\n', None),  # inline table
        ('[x]\ny = """\n[lda]\n"""\n', None),  # multi-line string
        ('[lda]\nlmtp_listen = ["unix:/a"] x\n', None),
        ("[lda]\nlmtp_listen = \n", None),
    ],
)
def test_listen_from_toml(text: str, want: tuple[str, ...] | None) -> None:
    assert pipe.listen_from_toml(text) == want


def test_line_scan_agrees_with_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[lda]\nlmtp_listen = ["unix:/run/x.sock"]\n[mail]\nroot = "/v"\n')
    assert pipe.handover_listen(str(cfg), {}) == config.load(str(cfg)).lda.lmtp_listen


def test_handover_listen_file_choice(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[lda]\nlmtp_listen = ["unix:/env.sock"]\n')
    assert pipe.handover_listen(None, {"MAILWARDEN_CONFIG": str(cfg)}) == ("unix:/env.sock",)
    assert pipe.handover_listen(str(tmp_path / "missing.toml"), {}) is None  # config.load says
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe")
    assert pipe.handover_listen(str(tmp_path / "bad.toml"), {}) is None


class FakeLmtpd:
    """One-connection LMTP server recording what it got; answers ``final`` after DATA."""

    def __init__(self, path: Path, final: bytes = b"250 2.0.0 <r@x.test> Delivered\r\n") -> None:
        self.path = path
        self.final = final
        self.received = b""
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(str(path))
        self.srv.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.srv.accept()
        with contextlib.suppress(OSError):  # the client closes right after sending QUIT
            self._dialogue(conn)
        conn.close()
        self.srv.close()

    def _dialogue(self, conn: socket.socket) -> None:
        f = conn.makefile("rwb")
        f.write(b"220 fake LMTP\r\n")
        f.flush()
        while line := f.readline():
            self.received += line
            cmd = line[:4].upper()
            if cmd == b"LHLO":
                f.write(b"250-fake\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif cmd == b"DATA":
                f.write(b"354 go\r\n")
                f.flush()
                while (data := f.readline()) != b".\r\n":
                    self.received += data
                self.received += data
                f.write(self.final)
            elif cmd == b"QUIT":
                f.write(b"221 bye\r\n")
                f.flush()
                break
            else:
                f.write(b"250 2.1.0 Ok\r\n")
            f.flush()


@pytest.mark.parametrize(
    ("final", "dsn", "code"),
    [
        (b"250 2.0.0 <r@x.test> Delivered\r\n", "2.0.0", 0),
        (b"452 4.2.2 <r@x.test> Mailbox full\r\n", "4.2.2", 75),
        (b"550 5.1.1 <r@x.test> User unknown\r\n", "5.1.1", 67),
    ],
)
def test_main_hands_over(tmp_path: Path, final: bytes, dsn: str, code: int) -> None:
    sock = tmp_path / "lmtp.sock"
    server = FakeLmtpd(sock, final)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[lda]\nlmtp_listen = ["unix:{sock}"]\n')
    out, err = io.StringIO(), io.StringIO()
    data = b"Subject: x\n\n.dot\nbody\n"
    rc = pipe.main(["-c", str(cfg), "-f", "s@x.test", "-d", "r@x.test"], io.BytesIO(data), out, err)
    server.thread.join(5)
    assert (rc, out.getvalue().split()[0]) == (code, dsn)
    assert b"RCPT TO:<r@x.test>\r\n" in server.received
    assert b"\r\n..dot\r\nbody\r\n.\r\n" in server.received
    assert b"QUIT" in server.received


def test_handover_path_imports_nothing_heavy(tmp_path: Path) -> None:
    sock = tmp_path / "lmtp.sock"
    FakeLmtpd(sock)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[lda]\nlmtp_listen = ["unix:{sock}"]\n')
    code = (
        "import io, sys; from mailwarden.pipe import lda as pipe;"
        f"rc = pipe.main(['-c', {str(cfg)!r}, '-f', 's@x', '-d', 'r@x.test'],"
        " io.BytesIO(b'x\\n'), io.StringIO(), io.StringIO());"
        "heavy = {'socket', 'typing', 'logging', 'tomllib', 'mailwarden.config', 're'};"
        "print(rc, sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split(None, 1) == ["0", "[]\n"]


def test_missing_config_defers_with_one_line(tmp_path: Path) -> None:
    """An operator's mistake: exit 75 (the mail waits), a clear DSN, no traceback."""
    out, err = io.StringIO(), io.StringIO()
    missing = tmp_path / "absent.toml"
    rc = pipe.main(
        ["-c", str(missing), "-f", "s@x.test", "-d", "r@x.test"], io.BytesIO(b"x\n"), out, err
    )
    assert rc == 75
    assert out.getvalue().startswith("4.3.5 mailwarden-lda misconfigured:")
    assert str(missing) in out.getvalue()
    assert "Traceback" not in err.getvalue()


# --- bin/mailwarden-lda: the script pip installs, as Postfix pipe(8) starts it ----------

LAUNCHER = SRC.parent / "bin" / "mailwarden-lda"
HEAVY = {
    "re",  # pip's console-script wrapper
    "runpy",  # python -m (and with it importlib.util, contextlib, collections)
    "importlib.util",
    "typing",
    "socket",
    "logging",
    "tomllib",
    "mailwarden.config",
    "mailwarden.errors",
    "__future__",
}


def _imported(stderr: str) -> set[str]:
    """Module names from ``-X importtime`` lines (``import time: self | cum | name``)."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def _launch(argv: list[str], data: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=data, capture_output=True, env=env, timeout=60, check=False)


@pytest.mark.parametrize(
    ("final", "line", "code"),
    [
        (b"250 2.0.0 <r@x.test> Delivered\r\n", b"2.0.0 <r@x.test> Delivered\n", 0),
        (b"452 4.2.2 <r@x.test> Mailbox full\r\n", b"4.2.2 <r@x.test> Mailbox full\n", 75),
        (b"550 5.1.1 <r@x.test> User unknown\r\n", b"5.1.1 <r@x.test> User unknown\n", 67),
    ],
)
def test_launcher_hands_over_with_light_imports(
    tmp_path: Path, final: bytes, line: bytes, code: int
) -> None:
    sock = tmp_path / "lmtp.sock"
    server = FakeLmtpd(sock, final)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[lda]\nlmtp_listen = ["unix:{sock}"]\n')
    argv = [sys.executable, "-X", "importtime", str(LAUNCHER), "-c", str(cfg)]
    p = _launch([*argv, "-f", "s@x.test", "-d", "r@x.test"], b"x\n", PYTHONPATH=str(SRC))
    server.thread.join(5)
    # The result line reaches the pipe although the process ends with os._exit.
    assert (p.returncode, p.stdout) == (code, line)
    assert b"RCPT TO:<r@x.test>\r\n" in server.received
    bare = _launch([sys.executable, "-X", "importtime", "-c", "pass"], b"")
    assert HEAVY & (_imported(p.stderr.decode()) - _imported(bare.stderr.decode())) == set()


def test_launcher_in_process_path_defers_on_missing_config(tmp_path: Path) -> None:
    argv = [sys.executable, str(LAUNCHER), "-c", str(tmp_path / "absent.toml")]
    p = _launch([*argv, "-f", "s@x.test", "-d", "r@x.test"], b"x\n", PYTHONPATH=str(SRC))
    assert p.returncode == 75
    assert p.stdout.startswith(b"4.3.5 mailwarden-lda misconfigured:")


def _prefix(tmp_path: Path, site_packages: Path | None) -> Path:
    """An interpreter ``<tmp>/bin/python3`` whose ``lib/pythonX.Y/site-packages`` is
    ``site_packages`` (absent if None): what ``-IS`` finds in a venv."""
    python = tmp_path / "prefix" / "bin" / "python3"
    python.parent.mkdir(parents=True)
    python.symlink_to(Path(sys.executable).resolve())
    lib = tmp_path / "prefix" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    lib.mkdir(parents=True)
    if site_packages is not None:
        (lib / "site-packages").symlink_to(site_packages)
    return python


def test_launcher_dash_is_finds_the_package_next_to_its_interpreter(tmp_path: Path) -> None:
    sock = tmp_path / "lmtp.sock"
    server = FakeLmtpd(sock)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[lda]\nlmtp_listen = ["unix:{sock}"]\n')
    python = _prefix(tmp_path, SRC)
    argv = [str(python), "-IS", str(LAUNCHER), "-c", str(cfg), "-f", "s@x.test", "-d", "r@x.test"]
    p = _launch(argv, b"x\n")
    server.thread.join(5)
    assert (p.returncode, p.stdout) == (0, b"2.0.0 <r@x.test> Delivered\n")


def test_launcher_without_the_package_defers_never_exits_1(tmp_path: Path) -> None:
    """No package next to the interpreter nor through ``site``: 4.3.0 and exit 75, so
    Postfix keeps the mail queued instead of bouncing it on a traceback's exit 1."""
    python = _prefix(tmp_path, None)
    p = _launch([str(python), "-IS", str(LAUNCHER), "-f", "s@x.test", "-d", "r@x.test"], b"x\n")
    assert (p.returncode, p.stdout) == (75, b"4.3.0 mailwarden-lda cannot start, try again later\n")
    assert b"No module named 'mailwarden'" in p.stderr
