"""The provisioning flow of a billing system, through a real ``mailwarden api`` process,
as Postfix and Dovecot see it after each step (issue 11, "Done means").

create domain -> mailboxes (with passwords) -> aliases (one, a catch-all) -> set quota ->
suspend (a mailbox, then the whole domain, then resume it) -> delete (mailbox, alias,
domain). After every step: ``postmap -q`` against contrib/postfix/<dialect>/*.cf rendered
for the test database (virtual_mailbox_domains, virtual_mailbox_maps, virtual_alias_maps),
and a real Dovecot with contrib/dovecot's SQL (``doveadm auth test``, ``doveadm user``):
login works after create, the quota rule follows set-quota, login is refused after
suspend, the user is unknown after delete. SQLite and MariaDB (the ``cli`` fixture);
Postfix and Dovecot read MariaDB through SELECT-only accounts on their views.

Reuses the ``api`` fixture of test_api.py, ``render_maps`` of test_contrib_postfix.py and
the Dovecot helpers of test_contrib_dovecot.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.contrib import CONTRIB, DOVECOT_VIEWS, mail_settings, placeholders, reader_url, render
from tests.integration.test_api import Api, api  # noqa: F401 - the fixture
from tests.integration.test_contrib_dovecot import (
    auth_test,
    fresh_ip,
    use_contrib_auth,
    userdb_fields,
)
from tests.integration.test_contrib_postfix import PostfixMaps, render_maps
from tests.servers import Dovecot, Postfix, missing_requirements

pytestmark = pytest.mark.integration

PW = {"ann@shop.test": "Ann-pw 1", "bob@shop.test": "B0b-pw!"}
VMD, VMM, VA = "virtual_mailbox_domains", "virtual_mailbox_maps", "virtual_alias_maps"
EX_NOUSER = 67


@dataclass
class Stack:
    api: Api
    maps: PostfixMaps
    dovecot: Dovecot

    # --- what Postfix sees
    def postfix(self) -> dict[tuple[str, str], list[str] | None]:
        keys = [(VMD, "shop.test")]
        for box in ("ann", "bob", "info", "other"):
            keys += [(VMM, f"{box}@shop.test"), (VA, f"{box}@shop.test")]
        keys.append((VA, "@shop.test"))
        return {key: self.maps.q_list(*key) for key in keys}

    # --- what Dovecot sees
    def login(self, user: str, password: str | None = None) -> bool:
        """``doveadm auth test`` (a failure from its own client address: no auth penalty)."""
        return auth_test(self.dovecot, user, password or PW[user], f"rip={fresh_ip()}")

    def userdb(self, user: str) -> dict[str, str] | None:
        proc = self.dovecot.doveadm("user", user)
        if proc.returncode == EX_NOUSER:
            return None
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return userdb_fields(proc.stdout)


@pytest.fixture
def stack(
    api: Api,  # noqa: F811 - the fixture imported above
    cli: Cli,
    request: pytest.FixtureRequest,
    workdir: Path,
) -> Iterator[Stack]:
    if missing := missing_requirements(Postfix, Dovecot):
        pytest.skip(f"Postfix/Dovecot not usable: {', '.join(missing)}")
    postfix = Postfix(workdir)  # only its config dir: postmap -q needs no running Postfix
    maps = render_maps(cli, request, postfix)
    server = request.getfixturevalue("mariadb") if cli.url.startswith("mysql:") else None
    url = reader_url(cli.url, server, "dovecot", DOVECOT_VIEWS)
    root, uid, gid = mail_settings(cli.config_path)
    values = placeholders(url, mail_root=root, uid=uid, gid=gid)
    sql = render(
        (CONTRIB / f"dovecot/dovecot-sql.conf.ext.{values['@DB_DIALECT@']}").read_text(), values
    )
    dovecot = Dovecot(workdir, sql, root)
    use_contrib_auth(dovecot, values)
    dovecot.start()
    try:
        yield Stack(api, maps, dovecot)
    finally:
        dovecot.stop()
        postfix.stop()


def _nothing(stack: Stack) -> None:
    """Neither Postfix nor Dovecot knows anything of shop.test."""
    assert set(stack.postfix().values()) == {None}
    for user in PW:
        assert stack.userdb(user) is None
        assert not stack.login(user)


def test_billing_flow_seen_by_postfix_and_dovecot(stack: Stack) -> None:
    root = stack.dovecot.mail_root
    _nothing(stack)
    with stack.api.client(stack.api.admin) as c:
        # 1. the domain: Postfix accepts mail for it, nobody can log in yet
        r = c.post("/domains", json={"name": "shop.test", "max_mailboxes": 10})
        assert r.status_code == 201, r.text
        seen = stack.postfix()
        assert seen.pop((VMD, "shop.test")) == ["shop.test"]
        assert set(seen.values()) == {None}
        assert stack.userdb("ann@shop.test") is None

        # 2. mailboxes with passwords: a Maildir for Postfix, a login for Dovecot
        for address, password in PW.items():
            r = c.post("/mailboxes", json={"address": address, "password": password})
            assert r.status_code == 201, r.text
        seen = stack.postfix()
        assert seen[(VMM, "ann@shop.test")] == ["shop.test/ann/"]
        assert seen[(VMM, "bob@shop.test")] == ["shop.test/bob/"]
        assert seen[(VA, "ann@shop.test")] == ["ann@shop.test"]
        assert seen[(VMM, "info@shop.test")] is None and seen[(VA, "info@shop.test")] is None
        for user in PW:
            assert stack.login(user)
            fields = stack.userdb(user)
            assert fields is not None
            assert fields["home"] == f"{root}/shop.test/{user.partition('@')[0]}/"
        assert not stack.login("ann@shop.test", "wrong password")
        assert not stack.login("other@shop.test", "whatever")

        # 3. aliases: one to both mailboxes and a catch-all; an alias is no login
        r = c.post("/aliases", json={"source": "info@shop.test", "destinations": list(PW)})
        assert r.status_code == 201, r.text
        r = c.post("/aliases", json={"source": "@shop.test", "destinations": ["ann@shop.test"]})
        assert r.status_code == 201, r.text
        seen = stack.postfix()
        assert seen[(VA, "info@shop.test")] == ["ann@shop.test", "bob@shop.test"]
        assert seen[(VA, "@shop.test")] == ["ann@shop.test"]
        assert seen[(VA, "bob@shop.test")] == ["bob@shop.test"]  # found before the catch-all
        assert seen[(VMM, "info@shop.test")] is None
        assert not stack.login("info@shop.test", PW["ann@shop.test"])

        # 4. quota: Dovecot's quota rule follows, in both userdb paths
        before = stack.userdb("ann@shop.test")
        assert before is not None and before["quota_rule"] == "*:bytes=0:messages=0"
        r = c.put(
            "/mailboxes/ann@shop.test",
            json={"quota_bytes": 2 * 1024**3, "quota_messages": 50000},
        )
        assert r.status_code == 200, r.text
        after = stack.userdb("ann@shop.test")
        assert after is not None
        assert after["quota_rule"] == f"*:bytes={2 * 1024**3}:messages=50000"
        proc = stack.dovecot.doveadm("auth", "login", "ann@shop.test", PW["ann@shop.test"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        prefetched = proc.stdout.partition("userdb extra fields:")[2].split()
        assert f"quota_rule=*:bytes={2 * 1024**3}:messages=50000" in prefetched
        other = stack.userdb("bob@shop.test")
        assert other is not None and other["quota_rule"] == "*:bytes=0:messages=0"
        assert stack.postfix()[(VMM, "ann@shop.test")] == ["shop.test/ann/"]

        # 5a. suspend one mailbox: no delivery, no login; the other one is untouched
        r = c.put("/mailboxes/bob@shop.test", json={"active": False})
        assert r.status_code == 200 and r.json()["active"] is False
        seen = stack.postfix()
        assert seen[(VMM, "bob@shop.test")] is None
        assert seen[(VA, "bob@shop.test")] is None
        assert seen[(VMM, "ann@shop.test")] == ["shop.test/ann/"]
        assert not stack.login("bob@shop.test")
        assert stack.userdb("bob@shop.test") is None
        assert stack.login("ann@shop.test")

        # 5b. suspend the whole domain: Postfix no longer hosts it, nobody logs in
        r = c.put("/domains/shop.test", json={"active": False})
        assert r.status_code == 200 and r.json()["active"] is False
        seen = stack.postfix()
        assert seen[(VMD, "shop.test")] is None
        assert seen[(VMM, "ann@shop.test")] is None
        assert not stack.login("ann@shop.test")
        assert stack.userdb("ann@shop.test") is None

        # 5c. the bill is paid: the domain and the mailbox come back as they were
        assert c.put("/domains/shop.test", json={"active": True}).status_code == 200
        assert c.put("/mailboxes/bob@shop.test", json={"active": True}).status_code == 200
        seen = stack.postfix()
        assert seen[(VMD, "shop.test")] == ["shop.test"]
        assert seen[(VMM, "bob@shop.test")] == ["shop.test/bob/"]
        assert seen[(VA, "info@shop.test")] == ["ann@shop.test", "bob@shop.test"]
        for user in PW:
            assert stack.login(user)
        back = stack.userdb("ann@shop.test")
        assert back is not None and back["quota_rule"] == after["quota_rule"]

        # 6. delete: the mailbox, the alias, then the domain with what is left in it
        assert c.delete("/mailboxes/bob@shop.test").status_code == 204
        seen = stack.postfix()
        assert seen[(VMM, "bob@shop.test")] is None
        assert seen[(VA, "bob@shop.test")] is None  # Postfix falls back on "@shop.test"
        assert seen[(VA, "@shop.test")] == ["ann@shop.test"]
        assert stack.userdb("bob@shop.test") is None
        assert not stack.login("bob@shop.test")
        assert c.delete("/aliases/info@shop.test").status_code == 204
        assert stack.postfix()[(VA, "info@shop.test")] is None
        assert c.delete("/domains/shop.test").status_code == 422  # still has a mailbox
        assert stack.login("ann@shop.test")
        r = c.delete("/domains/shop.test", params={"force": "true"})
        assert r.status_code == 204, r.text
        assert c.get("/domains/shop.test").status_code == 404
    _nothing(stack)
    actions = [row["action"] for row in stack.api.rows("SELECT action FROM audit_log")]
    assert actions.count("mailbox.add") == 2 and "domain.remove" in actions
