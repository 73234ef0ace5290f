"""POP-before-SMTP through the real servers: Dovecot 2.3 with contrib/dovecot's post-login
script and 93-mailwarden-postlogin.conf, Postfix with contrib/postfix/main.cf.policy,
the policy daemon, on a real MariaDB.

A client address (a loopback address of its own per case: 127.0.0.x) is refused relaying
before it logs in over IMAP or POP3, allowed afterwards (``mailwarden relay allow-login``
ran from the script, the entry shows in ``relay list`` as ``pop-before-smtp``), and
refused again once the entry has expired (moved into the past through its stored
expiry). A failed login records nothing, and only the address that logged in may relay.

The script service runs as root here (the test's config file and source tree are not
readable by Dovecot's internal user); docs/pop-before-smtp.md names the user to use.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import smtplib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.contrib import CONTRIB, DOVECOT_VIEWS, mail_settings, placeholders, reader_url, render
from tests.integration.test_contrib_dovecot import IMAP, POP3, use_contrib_auth
from tests.integration.test_policy_mta import postfix_settings, sql, start_policyd

pytestmark = pytest.mark.integration

SRC = Path(__file__).resolve().parents[2] / "src"
PASSWORD = "Corr3ct horse"
_ips = (f"127.0.0.{n}" for n in itertools.count(101))


def postlogin_script(base: Path, config: Path) -> Path:
    """contrib/dovecot/mailwarden-postlogin.sh pointed at this checkout and config."""
    wrapper = base / "mailwarden"
    # flag files let a test make the command hang or fail
    wrapper.write_text(
        f"#!/bin/sh\n[ -e {base}/hang ] && sleep 12\n[ -e {base}/fail ] && exit 1\n"
        f'PYTHONPATH={SRC} exec {sys.executable} -m mailwarden "$@"\n'
    )
    wrapper.chmod(0o755)
    text = (CONTRIB / "dovecot/mailwarden-postlogin.sh").read_text()
    text = text.replace("MAILWARDEN=/usr/local/bin/mailwarden", f"MAILWARDEN={wrapper}")
    text = text.replace(
        "MAILWARDEN_CONFIG=/etc/mailwarden/mailwarden.toml", f"MAILWARDEN_CONFIG={config}"
    )
    script = base / "postlogin.sh"
    script.write_text(text)
    script.chmod(0o755)
    return script


def postlogin_conf(script: Path) -> str:
    text = (CONTRIB / "dovecot/93-mailwarden-postlogin.conf").read_text()
    text = text.replace("/usr/local/lib/mailwarden/postlogin.sh", str(script))
    return text.replace("user = $default_internal_user", "user = root")


@pytest.fixture(scope="module")
def stack(mariadb: object) -> Iterator[dict[str, object]]:
    from tests.servers import Dovecot, Postfix, make_workdir, missing_requirements

    if missing := missing_requirements(Dovecot, Postfix):
        pytest.skip(f"servers not usable: {', '.join(missing)}")
    base = make_workdir("mw-popsmtp-")
    url = mariadb.create_database("mwpopsmtp", "mwpopsmtp", "pw")  # type: ignore[attr-defined]
    cli, daemon = start_policyd(base, url, "[relay]\npop_before_smtp_minutes = 30\n")
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", "alice@example.test", "--password-stdin", stdin=PASSWORD + "\n")
    postfix = Postfix(base, main_cf_extra=postfix_settings(daemon.port))
    postfix.start()
    reader = reader_url(url, mariadb, "dovecot", DOVECOT_VIEWS)  # type: ignore[arg-type]
    root, uid, gid = mail_settings(cli.config_path)
    values = placeholders(reader, mail_root=root, uid=uid, gid=gid)
    sql_text = render((CONTRIB / "dovecot/dovecot-sql.conf.ext.mysql").read_text(), values)
    extra = postlogin_conf(postlogin_script(base, cli.config_path))
    dovecot = Dovecot(base, sql_text, root, extra_conf=extra)
    use_contrib_auth(dovecot, values)
    dovecot.start()
    yield {"cli": cli, "postfix": postfix, "dovecot": dovecot, "base": base}
    dovecot.stop()
    postfix.stop()
    daemon.stop()
    if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
        shutil.rmtree(base, ignore_errors=True)


def relay_from(postfix: object, ip: str) -> tuple[int, str]:
    """RCPT to an outside address from client address ``ip`` (no AUTH)."""
    port = postfix.smtp_port  # type: ignore[attr-defined]
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(ip, 0)) as s:
        s.ehlo("client.test")
        code, msg = s.mail("user@client.test")
        assert code == 250, msg
        code, msg = s.rcpt("friend@elsewhere.test")
        return code, msg.decode(errors="replace")


def entries(cli: Cli) -> dict[str, dict[str, object]]:
    return {e["network"]: e for e in json.loads(cli.ok("relay", "list", "--all", "--json"))}


def wait_entry(cli: Cli, ip: str, timeout: float = 15.0) -> dict[str, object]:
    """The script runs in the background: wait for its row (with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        found = entries(cli).get(ip)
        if found is not None or time.monotonic() > deadline:
            assert found is not None, f"no relay entry for {ip} after the login"
            return found
        time.sleep(0.2)


def imap_login(dovecot: object, ip: str, password: str = PASSWORD) -> bool:
    with IMAP(dovecot.imap_port, ip) as imap:  # type: ignore[attr-defined]
        try:
            imap.login("alice@example.test", password)
        except IMAP.error:
            return False
        imap.logout()
        return True


def pop3_login(dovecot: object, ip: str) -> None:
    pop = POP3(dovecot.pop3_port, ip)  # type: ignore[attr-defined]
    try:
        pop.user("alice@example.test")
        pop.pass_(PASSWORD)
        pop.quit()
    finally:
        pop.close()


def test_imap_login_opens_relay_until_expiry(stack: dict[str, object]) -> None:
    cli, postfix, dovecot = stack["cli"], stack["postfix"], stack["dovecot"]
    assert isinstance(cli, Cli)
    ip, other = next(_ips), next(_ips)
    code, msg = relay_from(postfix, ip)
    assert code == 554 and "Relay access denied" in msg, msg
    assert imap_login(dovecot, ip)
    entry = wait_entry(cli, ip)
    assert entry["source"] == "pop-before-smtp" and entry["status"] == "temporary", entry
    time.sleep(1.2)  # policyd caches the relay networks for cache_ttl (1 s)
    assert relay_from(postfix, ip)[0] == 250
    assert relay_from(postfix, other)[0] == 554  # only the address that logged in
    # expired (its stored expiry moved into the past): refused again, listed as expired
    past = int(time.time()) - 1
    sql(cli, f"UPDATE relay_networks SET expires_at = {past} WHERE network = '{ip}'")
    time.sleep(1.2)
    code, msg = relay_from(postfix, ip)
    assert code == 554, msg
    assert entries(cli)[ip]["status"] == "expired"


def test_pop3_login_opens_relay(stack: dict[str, object]) -> None:
    cli, postfix, dovecot = stack["cli"], stack["postfix"], stack["dovecot"]
    assert isinstance(cli, Cli)
    ip = next(_ips)
    assert relay_from(postfix, ip)[0] == 554
    pop3_login(dovecot, ip)
    assert wait_entry(cli, ip)["source"] == "pop-before-smtp"
    time.sleep(1.2)
    assert relay_from(postfix, ip)[0] == 250


def test_failed_login_records_nothing(stack: dict[str, object]) -> None:
    cli, dovecot = stack["cli"], stack["dovecot"]
    assert isinstance(cli, Cli)
    ip, witness = next(_ips), next(_ips)
    assert not imap_login(dovecot, ip, "wrong password")
    assert imap_login(dovecot, witness)  # a later good login's entry shows up ...
    wait_entry(cli, witness)
    time.sleep(0.5)
    assert ip not in entries(cli)  # ... the failed one never does


@pytest.mark.parametrize("fault", ["hang", "fail"])
def test_a_hanging_or_failing_command_never_holds_the_login(
    stack: dict[str, object], fault: str
) -> None:
    cli, dovecot, base = stack["cli"], stack["dovecot"], stack["base"]
    assert isinstance(cli, Cli) and isinstance(base, Path)
    ip = next(_ips)
    flag = base / fault
    flag.touch()
    try:
        started = time.monotonic()
        assert imap_login(dovecot, ip)
        pop3_login(dovecot, ip)
        assert time.monotonic() - started < 5, "the login waited for the script"
    finally:
        flag.unlink()
    assert ip not in entries(cli)
