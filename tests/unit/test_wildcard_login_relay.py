"""Wildcard domains through the operations layer and the store, and POP-before-SMTP's
temporary relay entries (``store.relay.allow_login``), on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden import config
from mailwarden.errors import ConfigError, Conflict, Forbidden, NotFound, UsageError
from mailwarden.ops import aliases, domains, mailboxes, relay
from mailwarden.ops.base import Actor, Env
from mailwarden.store import migrate
from mailwarden.store import policy as policy_store
from mailwarden.store import relay as relay_store
from mailwarden.store.db import Database

ADMIN = Actor("cli:root@host", "admin")
READONLY = Actor("api:ro@1.2.3.4", "readonly")
NOW = 1_700_000_000


@pytest.fixture
def env(tmp_path: Path) -> Env:
    db = Database(f"sqlite:///{tmp_path}/w.db", create=True)
    migrate.init(db)
    return Env(db)


# --- wildcard domains -------------------------------------------------------------------


def test_mailboxes_and_aliases_live_under_concrete_names(env: Env) -> None:
    domains.add(env, ADMIN, "*.Example.TEST")
    mailboxes.add(env, ADMIN, "u@a.example.test", password="pw-1")
    aliases.add(env, ADMIN, "@a.example.test", ["u@a.example.test"])
    with env.db.read() as tx:
        rows = tx.all("SELECT address FROM mailboxes")
        facts = policy_store.domain(tx, "a.example.test")
    assert [r["address"] for r in rows] == ["u@a.example.test"]
    assert facts is not None and (facts.name, facts.kind, facts.target) == (
        "a.example.test",
        "local",
        "a.example.test",
    )
    assert domains.show(env, ADMIN, "*.example.test")["mailboxes"] == 1
    with pytest.raises(NotFound):  # the wildcard does not host example.test itself
        mailboxes.add(env, ADMIN, "u@example.test", password="pw-1")


def test_a_domain_that_would_take_addresses_from_a_wildcard_is_refused(env: Env) -> None:
    domains.add(env, ADMIN, "*.example.test")
    mailboxes.add(env, ADMIN, "u@x.b.example.test", password="pw-1")
    for name in ("x.b.example.test", "*.b.example.test"):
        with pytest.raises(Conflict, match="u@x.b.example.test"):
            domains.add(env, ADMIN, name)
    domains.add(env, ADMIN, "*.c.example.test")  # takes nothing: fine
    with env.db.read() as tx:
        names = [r["name"] for r in tx.all("SELECT name FROM domains ORDER BY name")]
    assert names == ["*.c.example.test", "*.example.test"]


@pytest.mark.parametrize(
    ("name", "kind", "alias_of", "message"),
    [
        ("*.a.test", "alias", "b.test", "wildcard can be a local or relay domain"),
        ("x.test", "alias", "*.b.test", "invalid domain"),
        ("*.test", "local", None, "a wildcard needs a domain with a dot"),
        ("a.*.test", "local", None, "a wildcard is"),
    ],
)
def test_wildcard_refusals(
    env: Env, name: str, kind: str, alias_of: str | None, message: str
) -> None:
    domains.add(env, ADMIN, "b.test")
    with pytest.raises(UsageError, match=message):
        domains.add(env, ADMIN, name, kind=kind, alias_of=alias_of)


def test_a_switched_off_exact_domain_is_not_taken_over(env: Env) -> None:
    domains.add(env, ADMIN, "*.example.test")
    domains.add(env, ADMIN, "off.example.test")
    domains.update(env, ADMIN, "off.example.test", {"active": False})
    domains.add(env, ADMIN, "*.relay.example.test", kind="relay")
    with env.db.read() as tx:
        assert policy_store.domain(tx, "off.example.test") is None
        relayed = policy_store.domain(tx, "x.relay.example.test")
        local = policy_store.domain(tx, "relay.example.test")
    assert relayed is not None and relayed.kind == "relay"
    assert local is not None and local.kind == "local"


# --- POP-before-SMTP ----------------------------------------------------------------------


def rows(env: Env) -> dict[str, relay_store.RelayNetwork]:
    with env.db.read() as tx:
        return {n.network: n for n in relay_store.list_networks(tx, 0, include_expired=True)}


def test_allow_login_adds_extends_and_keeps(env: Env) -> None:
    with env.db.transaction() as tx:
        assert relay_store.allow_login(tx, "192.0.2.7", now=NOW, expires_at=NOW + 600) == "added"
        # a later login extends, an earlier expiry never shortens
        assert relay_store.allow_login(tx, "192.0.2.7", now=NOW + 5, expires_at=NOW + 900) == (
            "extended"
        )
        relay_store.allow_login(tx, "192.0.2.7", now=NOW + 6, expires_at=NOW + 700)
        relay_store.add(tx, "198.51.100.1", now=NOW)  # the admin's entry stays as it is
        kept = relay_store.allow_login(tx, "198.51.100.1", now=NOW, expires_at=NOW + 60)
        assert kept == "kept"
    got = rows(env)
    assert (got["192.0.2.7"].expires_at, got["192.0.2.7"].source) == (NOW + 900, "pop-before-smtp")
    assert (got["198.51.100.1"].expires_at, got["198.51.100.1"].source) == (None, "admin")


def test_expired_login_entries_are_ignored_then_cleaned_up(env: Env) -> None:
    with env.db.transaction() as tx:
        relay_store.allow_login(tx, "192.0.2.7", now=NOW, expires_at=NOW + 60)
        assert relay_store.active_networks(tx, NOW + 59) == ["192.0.2.7"]
        assert relay_store.active_networks(tx, NOW + 60) == []  # expired at its expiry
        relay_store.add(tx, "203.0.113.0/24", now=NOW, expires_at=NOW + 60)  # the admin's
        # the next login (any address) deletes expired login entries, not the admin's
        relay_store.allow_login(tx, "192.0.2.8", now=NOW + 61, expires_at=NOW + 120)
    assert set(rows(env)) == {"192.0.2.8", "203.0.113.0/24"}


def test_admin_add_replaces_a_login_entry(env: Env) -> None:
    relay.allow_login(env, ADMIN, "192.0.2.9", 30)
    relay.add(env, ADMIN, "192.0.2.9")
    entry = rows(env)["192.0.2.9"]
    assert (entry.expires_at, entry.source) == (None, "admin")


@pytest.mark.parametrize(
    ("client", "stored"),
    [("192.0.2.7", "192.0.2.7"), ("::ffff:192.0.2.7", "192.0.2.7"), ("2001:DB8::1", "2001:db8::1")],
)
def test_allow_login_stores_one_host(env: Env, client: str, stored: str) -> None:
    record = relay.allow_login(env, ADMIN, client, 30)
    assert (record["network"], record["source"], record["status"]) == (
        stored,
        "pop-before-smtp",
        "temporary",
    )


@pytest.mark.parametrize(
    ("client", "minutes"),
    [("10.0.0.0/8", 30), ("unknown", 30), ("", 30), ("192.0.2.7", 0), ("192.0.2.7", 1441)],
)
def test_allow_login_refuses(env: Env, client: str, minutes: int) -> None:
    with pytest.raises(UsageError):
        relay.allow_login(env, ADMIN, client, minutes)


def test_allow_login_is_for_admins(env: Env) -> None:
    with pytest.raises(Forbidden):
        relay.allow_login(env, READONLY, "192.0.2.7", 30)


@pytest.mark.parametrize(
    ("minutes", "ok"), [(0, True), (30, True), (1440, True), (-1, False), (1441, False)]
)
def test_config_pop_before_smtp_minutes(minutes: int, ok: bool) -> None:
    data = {"relay": {"pop_before_smtp_minutes": minutes}}
    if ok:
        assert config.from_dict(data).relay.pop_before_smtp_minutes == minutes
    else:
        with pytest.raises(ConfigError):
            config.from_dict(data)
    assert config.Settings().relay.pop_before_smtp_minutes == 0  # off by default
