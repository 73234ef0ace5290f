"""The operations layer's checks, table by table, on a real SQLite file.

Roles and scope (``Actor``), ETags, cursors, secrets scrubbed, one audit row per change
(none for a refused one), token rules and authentication, the login throttle.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailwarden.api.auth import Throttle
from mailwarden.api.errors import Throttled
from mailwarden.errors import Conflict, Forbidden, NotFound, Stale, UsageError
from mailwarden.ops import aliases, base, domains, forwards, mailboxes, relay, sendas, tokens
from mailwarden.ops.base import Actor, Env
from mailwarden.store import migrate
from mailwarden.store.db import Database

ADMIN = Actor("cli:root@host", "admin")
READONLY = Actor("api:ro@1.2.3.4", "readonly")
RESELLER = Actor("api:res@1.2.3.4", "domain-admin", frozenset({"a.test"}))
USER = Actor("me:u@a.test@1.2.3.4", "user", mailbox="u@a.test")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    db = Database(f"sqlite:///{tmp_path}/ops.db", create=True)
    migrate.init(db)
    env = Env(db)
    for name in ("a.test", "b.test"):
        domains.add(env, ADMIN, name)
        mailboxes.add(env, ADMIN, f"u@{name}", password="pw-1")
    return env


def audit_rows(env: Env) -> list[dict[str, object]]:
    with env.db.read() as tx:
        return tx.all("SELECT action, object, domain, before_json, after_json FROM audit_log")


@pytest.mark.parametrize(
    ("actor", "domain", "sees"),
    [
        (ADMIN, "b.test", True),
        (ADMIN, None, True),
        (READONLY, "b.test", True),
        (RESELLER, "a.test", True),
        (RESELLER, "b.test", False),
        (RESELLER, None, False),
        (USER, "a.test", False),
    ],
)
def test_actor_sees(actor: Actor, domain: str | None, sees: bool) -> None:
    assert actor.sees(domain) is sees


@pytest.mark.parametrize("actor", [READONLY, USER])
def test_who_may_not_write(actor: Actor) -> None:
    with pytest.raises(Forbidden):
        actor.require_write()


def test_user_writes_only_self_service() -> None:
    USER.require_write(self_service=True)
    with pytest.raises(Forbidden):
        READONLY.require_write(self_service=True)


@pytest.mark.parametrize(
    ("header", "ok"),
    [(None, True), ("*", True), ("TAG", True), ('"x", TAG', True), ("W/TAG", True), ('"x"', False)],
)
def test_check_etag(header: str | None, ok: bool) -> None:
    record = {"a": 1, "used_bytes": 5}
    tag = base.etag(record)
    value = None if header is None else header.replace("TAG", tag)
    if ok:
        base.check_etag(record, value, "it")
    else:
        with pytest.raises(Stale):
            base.check_etag(record, value, "it")


def test_etag_ignores_volatile_keys() -> None:
    assert base.etag({"a": 1, "used_bytes": 1, "last_login": "x"}) == base.etag({"a": 1})
    assert base.etag({"a": 1}) != base.etag({"a": 2})


def test_cursor_round_trip_and_garbage() -> None:
    assert base.decode_cursor(base.encode_cursor("ü@a.test")) == "ü@a.test"
    assert base.decode_cursor(None) is None
    for bad in ("!!", "a", "%%%"):
        with pytest.raises(UsageError):
            base.decode_cursor(bad)


def test_scrub_drops_secrets() -> None:
    assert base.scrub({"address": "x", "password": "p", "token": "t"}) == {"address": "x"}


@pytest.mark.parametrize(
    ("kind", "limits", "transport", "message"),
    [
        ("alias", {"max_mailboxes": 1}, None, "--max-mailboxes applies to local domains only"),
        ("relay", {"default_quota_bytes": 1}, None, "--default-quota applies to local domains"),
        ("local", {}, "smtp:[mx.test]", "--transport applies to relay domains only"),
        ("relay", {}, "no transport", "invalid transport"),
        ("local", {"max_aliases": -1}, None, "must be a whole number"),
        ("alias", {}, None, "an alias domain needs alias_of"),
    ],
)
def test_domain_rules(
    env: Env, kind: str, limits: dict[str, int], transport: str | None, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        alias_of = "a.test" if kind == "alias" and limits else None
        domains.add(
            env, ADMIN, "c.test", kind=kind, alias_of=alias_of, limits=limits, transport=transport
        )
    assert not any(r["object"] == "c.test" for r in audit_rows(env))


def test_one_audit_row_per_change_none_when_refused(env: Env) -> None:
    n = len(audit_rows(env))
    domains.update(env, ADMIN, "a.test", {"max_mailboxes": 5})
    rows = audit_rows(env)
    assert len(rows) == n + 1 and rows[-1]["action"] == "domain.set"
    with pytest.raises(UsageError):
        domains.update(env, ADMIN, "a.test", {"max_mailboxes": 5, "transport": "smtp:x"})
    with pytest.raises(Conflict):
        mailboxes.add(env, ADMIN, "u@a.test", password="x")
    assert len(audit_rows(env)) == n + 1


def test_password_never_in_audit(env: Env) -> None:
    mailboxes.set_password(env, ADMIN, "u@a.test", password="Very-Secret-1")
    text = repr(audit_rows(env))
    assert "Very-Secret" not in text and "pw-1" not in text and "$6$" not in text


def test_domain_admin_scope(env: Env) -> None:
    assert mailboxes.show(env, RESELLER, "u@a.test")["address"] == "u@a.test"
    for call in (
        lambda: mailboxes.show(env, RESELLER, "u@b.test"),
        lambda: mailboxes.update(env, RESELLER, "u@b.test", {"name": "x"}),
        lambda: mailboxes.remove(env, RESELLER, "u@b.test"),
        lambda: forwards.show(env, RESELLER, "u@b.test"),
        lambda: aliases.add(env, RESELLER, "x@b.test", ["u@b.test"]),
        lambda: sendas.grant(env, RESELLER, "u@b.test", "x@b.test"),
        lambda: sendas.grant(env, RESELLER, "u@a.test", "u@b.test"),
        lambda: domains.show(env, RESELLER, "b.test"),
    ):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(UsageError, match="does not exist"):
        aliases.add(env, RESELLER, "x@a.test", ["u@b.test"])
    with pytest.raises(Forbidden):
        domains.add(env, RESELLER, "c.test")
    with pytest.raises(Forbidden):
        relay.add(env, RESELLER, "10.0.0.0/8")
    names = [m["address"] for m in mailboxes.page(env, RESELLER).items]
    assert names == ["u@a.test"]


def test_user_reaches_only_own_mailbox(env: Env) -> None:
    forwards.replace(env, USER, "u@a.test", ["x@ext.test"], keep_copy=True)
    with pytest.raises(NotFound):
        forwards.replace(env, USER, "u@b.test", ["x@ext.test"])
    with pytest.raises(Forbidden):
        mailboxes.update(env, USER, "u@a.test", {"quota_bytes": 0})


def test_pages_do_not_overlap(env: Env) -> None:
    for i in range(7):
        mailboxes.add(env, ADMIN, f"m{i}@a.test", password="p")
    seen, cursor = [], None
    while True:
        page = mailboxes.page(env, ADMIN, cursor=cursor, limit=3)
        seen += [m["address"] for m in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 9


@pytest.mark.parametrize(
    ("role", "domains_", "message"),
    [
        ("domain-admin", [], "needs at least one --domain"),
        ("readonly", ["a.test"], "applies to domain-admin tokens only"),
        ("root", [], "unknown role"),
    ],
)
def test_token_rules(env: Env, role: str, domains_: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        tokens.create(env, ADMIN, "t", role=role, domain_names=domains_)


def test_token_authentication(env: Env) -> None:
    made = tokens.create(env, ADMIN, "res", role="domain-admin", domain_names=["a.test"])
    actor = tokens.authenticate(env, made.token, "10.1.1.1")
    assert actor == Actor("api:res@10.1.1.1", "domain-admin", frozenset({"a.test"}))
    assert tokens.authenticate(env, made.token + "x", "10.1.1.1") is None
    assert tokens.authenticate(env, "not-a-token", "10.1.1.1") is None
    with pytest.raises(Forbidden):
        tokens.create(env, RESELLER, "more", role="admin")
    tokens.revoke(env, ADMIN, "res")
    assert tokens.authenticate(env, made.token, "10.1.1.1") is None
    with env.db.read() as tx:
        stored = tx.all("SELECT * FROM api_tokens")
    assert made.token not in repr(stored)


def test_expired_token(env: Env) -> None:
    made = tokens.create(env, ADMIN, "short", role="admin", expires_in=1)
    assert tokens.authenticate(env, made.token, "x") is not None
    time.sleep(1.1)
    assert tokens.authenticate(env, made.token, "x") is None
    assert tokens.show(env, ADMIN, "short")["state"] == "expired"


def test_throttle_per_account_and_client() -> None:
    t = Throttle(per_client=4, per_account=2, window=60)
    t.check("c1", "a")
    t.failed("c1", "a")
    t.failed("c1", "a")
    with pytest.raises(Throttled) as err:
        t.check("c1", "a")
    assert err.value.retry_after > 0
    t.check("c1", "b")  # another account from that client: not yet
    t.failed("c1", "b")
    t.failed("c1", "b")
    with pytest.raises(Throttled):
        t.check("c1", "c")  # the client is past its limit
    t.check("c2", "c")


def test_quota_over_filter_pages_across_batches(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailwarden.ops import quota as ops_quota
    from mailwarden.store import quota as store_quota

    monkeypatch.setattr(ops_quota, "BATCH", 3)
    for i in range(10):
        mailboxes.add(env, ADMIN, f"q{i}@a.test", password="pw-1", settings={"quota_bytes": 100})
    with env.db.transaction() as tx:
        for i in range(10):
            box = tx.scalar("SELECT id FROM mailboxes WHERE address = ?", (f"q{i}@a.test",))
            store_quota.set_usage(tx, int(box), 95 if i % 3 == 0 else 10, 1, 1)
    first = ops_quota.page(env, ADMIN, limit=2, over=90)
    assert [r["address"] for r in first.items] == ["q0@a.test", "q3@a.test"]
    second = ops_quota.page(env, ADMIN, limit=2, over="90", cursor=first.next_cursor)
    assert [r["address"] for r in second.items] == ["q6@a.test", "q9@a.test"]
    assert (
        second.next_cursor is None
        or not ops_quota.page(env, ADMIN, over=90, cursor=second.next_cursor).items
    )
    assert len(ops_quota.list_all(env, ADMIN, over=0)) == 10  # unlimited u@ never "over"
    assert [r["address"] for r in ops_quota.page(env, RESELLER).items][-1] == "u@a.test"
    with pytest.raises(NotFound):
        ops_quota.show(env, RESELLER, "u@b.test")
    with pytest.raises(NotFound):
        ops_quota.page(env, RESELLER, domain="b.test")
    with pytest.raises(Forbidden):
        ops_quota.page(env, USER)
    assert ops_quota.show(env, USER, "u@a.test")["percent"] is None
    with pytest.raises(UsageError, match="must be a number >= 0"):
        ops_quota.page(env, ADMIN, over="-5")


def test_provision_is_the_default_services_of_a_new_mailbox(env: Env) -> None:
    from dataclasses import replace

    from mailwarden import config
    from mailwarden.errors import ConfigError

    narrow = replace(env, provision=5)  # [api] provision = 5: mail and contacts
    assert mailboxes.add(narrow, ADMIN, "p@a.test", password="pw-1").record["services"] == [
        "mail",
        "contacts",
    ]
    named = mailboxes.add(narrow, ADMIN, "q@a.test", password="pw-1", settings={"services": 2})
    assert named.record["services"] == ["calendar"]
    assert config.from_dict({"api": {"provision": 3}}).api.provision == 3
    assert config.Settings().api.provision == 7
    for bad in (0, 8):
        with pytest.raises(ConfigError, match="api.provision must be 1..7"):
            config.from_dict({"api": {"provision": bad}})


def test_first_login_is_recorded_once(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    from mailwarden.ops import logins

    caplog.set_level("INFO", logger="mailwarden.provision")
    got = logins.first_login(env, "U@a.test", client="192.0.2.7", now=1_900_000_000)
    assert got is not None and got["address"] == "u@a.test" and got["client"] == "192.0.2.7"
    assert got["services"] == ["mail", "calendar", "contacts"]
    assert logins.first_login(env, "u@a.test", now=1_900_000_500) is None  # idempotent
    with env.db.read() as tx:
        row = tx.one("SELECT provisioned_at, last_login FROM mailboxes WHERE address = 'u@a.test'")
    assert row == {"provisioned_at": 1_900_000_000, "last_login": 1_900_000_000}
    lines = [r.getMessage() for r in caplog.records if r.name == "mailwarden.provision"]
    assert lines == [
        "first login: OK address=u@a.test client=192.0.2.7 services=mail,calendar,contacts"
        " maildir=/var/mail/vhosts/a.test/u"
    ]
    with pytest.raises(NotFound):
        logins.first_login(env, "ghost@a.test")


def test_dav_login_check(env: Env) -> None:
    from mailwarden.ops import logins

    mailboxes.add(env, ADMIN, "cal@a.test", password="pw-1", settings={"services": 2})
    mailboxes.add(env, ADMIN, "mail@a.test", password="pw-1", settings={"services": 1})
    assert logins.check(env, "Cal@A.test", "pw-1") == logins.Login(True, "cal@a.test", "ok")
    assert logins.check(env, "mail@a.test", "pw-1").why == "services"
    assert logins.check(env, "cal@a.test", "nope").why == "password"
    assert logins.check(env, "ghost@a.test", "pw-1").why == "unknown"
    assert logins.check(env, "not an address", "pw-1").why == "unknown"
    mailboxes.update(env, ADMIN, "cal@a.test", {"active": False})
    assert logins.check(env, "cal@a.test", "pw-1").why == "inactive"
