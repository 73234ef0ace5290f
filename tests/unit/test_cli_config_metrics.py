"""``--config`` after every command, and "metrics off" spelled ``none`` everywhere.

Issue 9, point 7: ``mailwarden lmtpd --config X`` was refused while ``policyd --config
X`` worked; metrics were switched off with ``''`` for lmtpd and ``none`` elsewhere
(lmtpd crashed on ``none``; the milter took ``--metrics ''`` as "use the config"; serve
could not switch its endpoint off at all). Now ``none`` is the one spelling, in
``[metrics] listen`` and every ``--metrics``; ``''`` still means off, with one
deprecation line.
"""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailwarden import config
from mailwarden.admin import cli
from mailwarden.errors import ConfigError
from tests import servers
from tests.conftest import Cli, write_config

SRC = Path(__file__).resolve().parents[2] / "src"
MISSING = "/nonexistent/mailwarden-h3a.toml"


# --config after the command ----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["lmtpd"],
        ["policyd"],
        ["milter"],
        ["serve", "--foreground"],
        ["deliver", "-f", "a@b.test", "-d", "c@d.test"],
        ["domain", "list"],
        ["user", "list"],
        ["db", "status"],
        ["setup", "--non-interactive"],
        ["doctor"],
    ],
    ids=lambda argv: argv[0],
)
def test_config_after_the_command_is_the_one_read(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The file named after the command is loaded (here: reported missing, exit 1)
    before anything starts; it wins over one given before the command."""
    assert cli.main(["--config", "/etc/ignored.toml", *argv, "--config", MISSING]) == 1
    err = capsys.readouterr().err
    assert err == f"mailwarden: {MISSING}: configuration file not found\n"


def test_config_after_an_admin_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "vmail"
    root.mkdir()
    url = f"sqlite:///{tmp_path}/mw.sqlite"
    cfg = write_config(tmp_path / "mw.toml", url, root)
    Cli(cfg, url).ok("db", "init")
    assert cli.main(["domain", "add", "example.test", "--config", str(cfg)]) == 0
    assert cli.main(["domain", "list", "--config", str(cfg)]) == 0
    assert "example.test" in capsys.readouterr().out


# metrics off: config and flags --------------------------------------------------------


def test_config_metrics_listen_values() -> None:
    assert config.from_dict({"metrics": {"listen": "none"}}).metrics.listen == "none"
    assert config.from_dict({"metrics": {"listen": "[::1]:9190"}}).metrics.listen == "[::1]:9190"
    config.from_dict({"metrics": {"listen": ""}})  # deprecated, still loads
    for bad in ("off", "9190", "127.0.0.1:0", "::1:9190", "127.0.0.1:http"):
        with pytest.raises(ConfigError, match=r"metrics.listen must be HOST:PORT or 'none'"):
            config.from_dict({"metrics": {"listen": bad}})


def test_metrics_listen_resolution(capsys: pytest.CaptureFixture[str]) -> None:
    on = config.from_dict({"metrics": {"listen": "127.0.0.1:9"}}, source="/etc/mw.toml")
    off = config.from_dict({"metrics": {"listen": "none"}})
    old = config.from_dict({"metrics": {"listen": ""}}, source="/etc/mw.toml")
    assert config.metrics_listen(None, on, "x") == "127.0.0.1:9"
    assert config.metrics_listen("none", on, "x") is None  # the flag wins
    assert config.metrics_listen("127.0.0.1:8", off, "x") == "127.0.0.1:8"
    assert config.metrics_listen(None, off, "x") is None
    assert capsys.readouterr().err == ""
    assert config.metrics_listen("", on, "mailwarden lmtpd") is None  # not "use the config"
    assert config.metrics_listen(None, old, "mailwarden milter") is None
    assert capsys.readouterr().err.splitlines() == [
        "mailwarden lmtpd: --metrics '' is deprecated: write --metrics none to switch metrics off",
        'mailwarden milter: /etc/mw.toml: [metrics] listen = "" is deprecated: '
        'write listen = "none" to switch metrics off',
    ]


@pytest.mark.parametrize("daemon", ["lmtpd", "policyd", "milter", "serve"])
def test_metrics_flag_refuses_other_spellings(
    daemon: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([daemon, "--metrics", "off"])
    assert exc.value.code == 2
    assert "--metrics: expected HOST:PORT or none (off), got 'off'" in capsys.readouterr().err


def test_serve_metrics_none_serves_no_endpoint(tmp_path: Path) -> None:
    from mailwarden.serve import main as serve_main

    settings = config.from_dict(
        {"lda": {"lmtp_listen": [f"unix:{tmp_path}/lmtp.sock"]}}, source=str(tmp_path / "c")
    )
    for flag in (["--metrics", "none"], []):
        args = cli.build_parser("serve").parse_args(["serve", "--only", "lmtpd", *flag])
        if not flag:
            settings = config.from_dict({"metrics": {"listen": "none"}})
        _, endpoint = serve_main.build(settings, args)
        assert endpoint is None


# the daemons, started ------------------------------------------------------------------


def _setup(tmp_path: Path, metrics: str) -> tuple[Path, Path]:
    root = tmp_path / "vmail"
    root.mkdir()
    url = f"sqlite:///{tmp_path}/mw.sqlite"
    cfg = write_config(
        tmp_path / "mw.toml",
        url,
        root,
        f'[lda]\nmetrics_dir = "{tmp_path}/metrics"\n'
        f'[milter]\nclamd = ""\nspamd = ""\n[metrics]\nlisten = "{metrics}"\n',
    )
    runner = Cli(cfg, url)
    runner.ok("db", "init")
    runner.ok("domain", "add", "example.test")
    runner.ok("user", "add", "--password-stdin", "alice@example.test", stdin="pw\n")
    return cfg, root


def _start(
    daemon: str, cfg: Path, tmp_path: Path, *args: str
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m mailwarden DAEMON --config CFG --listen ... ARGS`` until it listens."""
    if daemon == "lmtpd":
        listen = f"unix:{tmp_path}/lmtp.sock"
    elif daemon == "milter":
        listen = f"inet:{servers.free_port()}@127.0.0.1"
    else:
        listen = f"127.0.0.1:{servers.free_port()}"
    log = tmp_path / f"{daemon}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailwarden", daemon, "--config", str(cfg)]
            + ["--listen", listen, *args],
            env=dict(os.environ, PYTHONPATH=str(SRC)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    from tests.daemons import listen_ready

    deadline = time.monotonic() + 30
    while not listen_ready(listen):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{daemon} did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc, listen


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


@pytest.mark.parametrize("daemon", ["lmtpd", "policyd", "milter"])
@pytest.mark.parametrize(
    ("in_config", "flag", "deprecated"),
    [
        ("none", [], False),  # lmtpd crashed on this (int("none"))
        ("CONFIG_PORT", ["--metrics", "none"], False),  # the flag wins over the config
        ("CONFIG_PORT", ["--metrics", ""], True),  # the milter served the config's port
    ],
    ids=["config-none", "flag-none", "flag-empty"],
)
def test_daemon_with_metrics_off(
    daemon: str, in_config: str, flag: list[str], deprecated: bool, tmp_path: Path
) -> None:
    port = servers.free_port()
    cfg, root = _setup(tmp_path, in_config.replace("CONFIG_PORT", f"127.0.0.1:{port}"))
    proc, listen = _start(daemon, cfg, tmp_path, *flag)
    try:
        if daemon == "lmtpd":  # it delivers
            with smtplib.LMTP(listen[5:]) as client:
                assert not client.sendmail("bob@other.test", ["alice@example.test"], b"Hi\n")
            assert len(list((root / "example.test" / "alice" / "new").iterdir())) == 1
        time.sleep(0.3)
        assert not servers.port_open(port)  # no /metrics anywhere
    finally:
        rc = _stop(proc)
    text = (tmp_path / f"{daemon}.log").read_text()
    assert rc == 0, text
    assert "Traceback" not in text
    assert ("is deprecated: write --metrics none" in text) == deprecated, text
