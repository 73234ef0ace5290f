"""The REST API end to end: a real ``mailwarden api`` process (uvicorn on loopback) over
a real SQLite file and a real MariaDB, driven with httpx like a billing system would.

Covers: tokens shown once and stored hashed; 201 + Location, ETag/If-Match (412); the
domain-admin scope (another domain's mailbox, alias, forward answer 404 exactly as a
missing one); 401/403; cursor pagination; one audit row per change without secrets;
throttled mailbox logins on /me; the one error shape (400/415/422); api.log lines;
mailing lists and fetch accounts (the remote password write-only, /me/fetch), and
POP-before-SMTP entries among the relay networks.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailwarden.store.db import Database
from tests.conftest import Cli, mailwarden_bin

pytestmark = pytest.mark.integration


@dataclass
class Api:
    cli: Cli
    url: str
    log: Path
    admin: str  # an admin token

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=10, **kw)

    def token(self, name: str, *args: str) -> str:
        out = json.loads(self.cli.ok("token", "create", name, *args, "--json"))
        return str(out["token"])

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        db = Database(self.cli.url)
        try:
            with db.read() as tx:
                return tx.all(sql, params)
        finally:
            db.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api(cli: Cli, tmp_path: Path) -> Iterator[Api]:
    import os

    port = _free_port()
    log = tmp_path / "api.log"
    # the mailing lists' spool: a temporary one, owned by root (as test_cli_lists.py)
    with cli.config_path.open("a") as f:
        f.write(f'\n[lists]\nspool = "{tmp_path / "spool"}"\nuser = "root"\n')
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    proc = subprocess.Popen(
        [*mailwarden_bin(), "api", "--config", str(cli.config_path)]
        + ["--listen", f"127.0.0.1:{port}", "--log", str(log)],
        env=env,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/api/v1/openapi.json", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"mailwarden api did not start: {err}")
        time.sleep(0.05)
    admin = json.loads(cli.ok("token", "create", "billing", "--role", "admin", "--json"))["token"]
    try:
        yield Api(cli, url, log, admin)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stderr:
            proc.stderr.close()


def error_of(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


def test_token_shown_once_only_hash_stored(api: Api) -> None:
    token = api.token("panel", "--role", "readonly")
    assert token.startswith("mw_") and len(token) > 40
    rows = api.rows("SELECT * FROM api_tokens WHERE name = ?", ("panel",))
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(rows, default=str)
    listed = api.cli.ok("token", "list", "--json")
    assert token not in listed and "panel" in listed
    with api.client(api.admin) as c:
        got = c.get("/tokens/panel").json()
        assert "token" not in got and got["role"] == "readonly"
        made = c.post("/tokens", json={"name": "t2", "role": "admin"})
        assert made.status_code == 201 and made.json()["token"].startswith("mw_")
        assert "token" not in c.get("/tokens/t2").json()
    audit = json.dumps(api.rows("SELECT * FROM audit_log"), default=str)
    assert token not in audit and made.json()["token"] not in audit


def test_provisioning_flow_with_etags(api: Api) -> None:
    with api.client(api.admin) as c:
        r = c.post("/domains", json={"name": "shop.test", "max_mailboxes": 10})
        assert r.status_code == 201 and r.headers["location"] == "/api/v1/domains/shop.test"
        assert c.post("/domains", json={"name": "shop.test"}).status_code == 409
        r = c.post("/mailboxes", json={"address": "ann@shop.test", "password": "Ann-pw-1"})
        assert r.status_code == 201, r.text
        assert r.headers["location"] == "/api/v1/mailboxes/ann%40shop.test"
        assert "password" not in r.json()
        r = c.get("/mailboxes/ann@shop.test")
        tag = r.headers["etag"]
        r = c.put(
            "/mailboxes/ann@shop.test", json={"quota_bytes": 10**9}, headers={"If-Match": tag}
        )
        assert r.status_code == 200 and r.json()["quota_bytes"] == 10**9
        again = c.put(
            "/mailboxes/ann@shop.test", json={"quota_bytes": 10**9}, headers={"If-Match": tag}
        )
        assert again.status_code == 412 and error_of(again) == "precondition_failed"
        same = c.put("/mailboxes/ann@shop.test", json={"quota_bytes": 10**9})
        assert same.status_code == 200 and same.headers["etag"] == r.headers["etag"]  # idempotent
        r = c.post("/aliases", json={"source": "info@shop.test", "destinations": ["ann@shop.test"]})
        assert r.status_code == 201
        r = c.put("/mailboxes/ann@shop.test", json={"active": False})
        assert r.json()["active"] is False
        assert c.delete("/mailboxes/nobody@shop.test").status_code == 404
        assert c.delete("/domains/shop.test").status_code == 422  # still has a mailbox
        assert c.delete("/domains/shop.test", params={"force": "true"}).status_code == 204
        assert c.get("/domains/shop.test").status_code == 404
    views = api.rows("SELECT * FROM postfix_virtual_alias WHERE address = ?", ("info@shop.test",))
    assert views == []


def test_domain_admin_sees_only_its_domains(api: Api) -> None:
    with api.client(api.admin) as c:
        for d in ("a.test", "b.test"):
            assert c.post("/domains", json={"name": d}).status_code == 201
            assert (
                c.post("/mailboxes", json={"address": f"u@{d}", "password": "x1"}).status_code
                == 201
            )
            r = c.post("/aliases", json={"source": f"al@{d}", "destinations": [f"u@{d}"]})
            assert r.status_code == 201
    token = api.token("resellerA", "--role", "domain-admin", "--domain", "a.test")
    with api.client(token) as c:
        assert c.get("/mailboxes/u@a.test").status_code == 200
        hidden = c.get("/mailboxes/u@b.test")
        missing = c.get("/mailboxes/zz@b.test")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["error"]["message"] == "unknown mailbox 'u@b.test'"
        for path in ("/aliases/al@b.test", "/forwards/u@b.test", "/domains/b.test"):
            assert c.get(path).status_code == 404, path
        for method, path, body in (
            ("PUT", "/mailboxes/u@b.test", {"name": "x"}),
            ("DELETE", "/mailboxes/u@b.test", None),
            ("PUT", "/forwards/u@b.test", {"destinations": ["x@ext.test"]}),
            ("DELETE", "/aliases/al@b.test", None),
            ("PUT", "/aliases/al@b.test", {"destinations": ["x@ext.test"]}),
        ):
            r = c.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
        r = c.post("/mailboxes", json={"address": "new@b.test", "password": "x1"})
        assert r.status_code == 404
        r = c.post("/aliases", json={"source": "x@a.test", "destinations": ["u@b.test"]})
        assert r.status_code == 422 and "does not exist" in r.json()["error"]["message"]
        names = [m["address"] for m in c.get("/mailboxes").json()["items"]]
        assert names == ["u@a.test"]
        assert [a["source"] for a in c.get("/aliases").json()["items"]] == ["al@a.test"]
        assert c.get("/mailboxes", params={"domain": "b.test"}).status_code == 404
        assert c.get("/relay-networks").status_code == 403
        assert c.get("/tokens").status_code == 403
        assert c.post("/domains", json={"name": "c.test"}).status_code == 403
        assert all(e["domain"] == "a.test" for e in c.get("/audit").json()["items"])
        assert (
            c.post(
                "/aliases", json={"source": "y@a.test", "destinations": ["u@a.test"]}
            ).status_code
            == 201
        )
    assert api.rows("SELECT name FROM mailboxes WHERE address = ?", ("u@b.test",)) == [{"name": ""}]


def test_401_and_403(api: Api) -> None:
    readonly = api.token("ro", "--role", "readonly")
    revoked = api.token("old", "--role", "admin")
    api.cli.ok("token", "revoke", "old")
    expired = api.token("short", "--role", "admin", "--expires", "1s")
    time.sleep(1.2)
    with api.client() as c:
        r = c.get("/domains")
        assert r.status_code == 401 and error_of(r) == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
        for bad in ("mw_nope", revoked, expired, "Basic dTpw"):
            r = c.get("/domains", headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401, bad
        r = c.get("/domains", headers={"Authorization": "Basic dUBhLnRlc3Q6eDE="})
        assert r.status_code == 401
    with api.client(readonly) as c:
        assert c.get("/domains").status_code == 200
        r = c.post("/domains", json={"name": "ro.test"})
        assert r.status_code == 403 and error_of(r) == "forbidden"
    with api.client(api.admin) as c:
        assert c.get("/tokens/old").json()["state"] == "revoked"


def test_pagination_and_filters(api: Api) -> None:
    with api.client(api.admin) as c:
        c.post("/domains", json={"name": "p.test"})
        c.post("/domains", json={"name": "q.test"})
        for i in range(23):
            r = c.post("/mailboxes", json={"address": f"u{i:02d}@p.test", "password": "pw1"})
            assert r.status_code == 201
        c.post("/mailboxes", json={"address": "z@q.test", "password": "pw1"})
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 10, "domain": "p.test"}
            if cursor:
                params["cursor"] = cursor
            body = c.get("/mailboxes", params=params).json()
            seen += [m["address"] for m in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert pages == 3 and seen == sorted(seen) and len(set(seen)) == 23
        assert c.get("/mailboxes", params={"limit": 0}).status_code == 422
        assert c.get("/mailboxes", params={"cursor": "!!"}).status_code == 422
        assert len(c.get("/mailboxes").json()["items"]) == 24


def test_audit_row_per_change_without_secrets(api: Api) -> None:
    with api.client(api.admin) as c:
        c.post("/domains", json={"name": "au.test"})
        c.post("/mailboxes", json={"address": "bob@au.test", "password": "Sup3r-Secret"})
        c.put("/mailboxes/bob@au.test/password", json={"password": "N3w-Secret"})
        c.put("/forwards/bob@au.test", json={"destinations": ["x@ext.test"], "keep_copy": True})
        entries = c.get("/audit", params={"domain": "au.test"}).json()["items"]
    actions = [e["action"] for e in entries]
    assert actions == ["forward.set", "mailbox.password", "mailbox.add", "domain.add"]
    assert {e["actor"] for e in entries} == {"api:billing@127.0.0.1"}
    add = entries[2]
    assert add["before"] is None and add["after"]["address"] == "bob@au.test"
    assert entries[0]["before"]["forwards"] == [] and entries[0]["after"]["keep_copy"] is True
    raw = json.dumps(api.rows("SELECT * FROM audit_log"), default=str)
    assert "Secret" not in raw and "$6$" not in raw and "{CRYPT}" not in raw
    out = api.cli.ok("audit", "list", "--domain", "au.test")
    assert "mailbox.add" in out and "api:billing@127.0.0.1" in out
    api.cli.ok("domain", "set", "au.test", "--max-aliases", "3")
    latest = json.loads(api.cli.ok("audit", "list", "--json", "--limit", "1"))[0]
    assert latest["action"] == "domain.set" and latest["actor"].startswith("cli:")
    assert latest["before"]["max_aliases"] == 0 and latest["after"]["max_aliases"] == 3


def test_me_login_and_throttling(api: Api) -> None:
    with api.client(api.admin) as c:
        c.post("/domains", json={"name": "me.test"})
        c.post("/mailboxes", json={"address": "eve@me.test", "password": "right-pw"})
        c.post("/mailboxes", json={"address": "sam@me.test", "password": "sam-pw"})
    with api.client() as c:
        r = c.get("/me", auth=("eve@me.test", "right-pw"))
        assert r.status_code == 200 and r.json()["address"] == "eve@me.test"
        assert c.get("/me", auth=("eve@me.test", "wrong")).status_code == 401
        r = c.put(
            "/me/forward", auth=("sam@me.test", "sam-pw"), json={"destinations": ["o@ext.test"]}
        )
        assert r.status_code == 200 and r.json()["forwards"] == ["o@ext.test"]
        # a mailbox login is no API token
        assert c.get("/domains", auth=("eve@me.test", "right-pw")).status_code == 401
        for _ in range(4):
            assert c.get("/me", auth=("eve@me.test", "wrong")).status_code == 401
        r = c.get("/me", auth=("eve@me.test", "right-pw"))
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert error_of(r) == "throttled"
        # another account from this client still works until the client limit
        assert c.get("/me", auth=("sam@me.test", "sam-pw")).status_code == 200
        for _ in range(5):
            c.get("/me", auth=("nobody@me.test", "x"))
        assert c.get("/me", auth=("sam@me.test", "sam-pw")).status_code == 429
        r = c.put("/me/password", auth=("sam@me.test", "sam-pw"), json={"password": "n"})
        assert r.status_code == 429


def test_bad_requests_get_one_error_shape(api: Api) -> None:
    with api.client(api.admin) as c:
        r = c.post("/domains", json={"name": "e.test", "colour": "red"})
        assert r.status_code == 422 and error_of(r) == "invalid"
        r = c.post("/domains", content=b"{nope", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and error_of(r) == "bad_request"
        r = c.post("/domains", content=b"name=x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        r = c.post(
            "/domains",
            content=b"x" * (1024 * 1024 + 1),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413
        r = c.post("/domains", json={"name": "x'; DROP TABLE domains;--"})
        assert r.status_code == 422 and error_of(r) == "invalid"
        r = c.post("/mailboxes", json={"address": "../../etc@e.test", "password": "p"})
        assert r.status_code in (404, 422)
        assert c.get("/nothing").status_code == 404
    assert api.rows("SELECT COUNT(*) AS n FROM domains") == [{"n": 0}]


def test_access_log_one_line_per_request_without_secrets(api: Api) -> None:
    with api.client(api.admin) as c:
        c.get("/domains")
        c.post("/domains", json={"name": "log.test"})
    with api.client() as c:
        c.get("/me", auth=("x@log.test", "pw-not-logged"))
    time.sleep(0.2)
    lines = api.log.read_text().splitlines()
    assert any("api:billing@127.0.0.1 GET /api/v1/domains 200" in ln for ln in lines), lines
    assert any(" POST /api/v1/domains 201 " in ln for ln in lines)
    assert any(" GET /api/v1/me 401 " in ln for ln in lines)
    text = api.log.read_text()
    assert api.admin not in text and "pw-not-logged" not in text


# --- the domain-admin isolation, walked over the whole OpenAPI spec ------------------------

# A body for each (method, path) that takes one: valid for the object of domain b.test,
# so that only the scope can refuse it. A new endpoint with a body must be added here.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/domains"): {"name": "b2.test"},
    ("put", "/domains/{name}"): {"max_mailboxes": 9},
    ("post", "/mailboxes"): {"address": "new@b.test", "password": "pw1"},
    ("put", "/mailboxes/{address}"): {"name": "changed"},
    ("put", "/mailboxes/{address}/password"): {"password": "changed-pw"},
    ("post", "/aliases"): {"source": "new@b.test", "destinations": ["u@b.test"]},
    ("put", "/aliases/{source}"): {"destinations": ["x@ext.test"]},
    ("put", "/forwards/{address}"): {"destinations": ["x@ext.test"]},
    ("post", "/relay-networks"): {"network": "10.9.0.0/16"},
    ("post", "/groups"): {"name": "g2"},
    ("post", "/send-as"): {"login": "u@b.test", "address": "other@b.test"},
    ("put", "/rate-limits/{period}/{scope}"): {"messages": 1},
    ("put", "/spam/{scope}"): {"action": "reject"},
    ("post", "/spam/{scope}/lists"): {"kind": "block", "pattern": "bad@spam.test"},
    ("put", "/vacation/{address}"): {"subject": "away", "body": "gone"},
    ("post", "/tokens"): {"name": "sneaky", "role": "admin"},
    ("post", "/lists"): {"address": "new@b.test", "owners": ["u@b.test"]},
    ("post", "/lists/{address}/members"): {"members": ["x@ext.test"]},
    ("put", "/lists/{address}/moderation"): {"moderated": True},
    ("post", "/fetch-accounts"): {
        "mailbox": "u@b.test",
        "protocol": "imap",
        "host": "imap.ext.test",
        "username": "u",
        "password": "remote-pw",
    },
}
PARAMS = {
    "name": "b.test",
    "address": "u@b.test",
    "source": "al@b.test",
    "scope": "b.test",
    "login": "u@b.test",
    "period": "hour",
    "network": "10.0.0.0/8",
    "member": "u@b.test",
    "account_id": "1",  # the one fetch account _seed_b makes (of u@b.test)
}
# parameters of one path prefix: the objects _seed_b made there
PARAMS_UNDER = {"/lists/": {"address": "team@b.test"}}
QUERY = {
    ("delete", "/spam/{scope}/lists"): {"pattern": "spammer@bad.test"},
    ("get", "/traffic"): {"since": "2026-01-01", "until": "2026-01-31"},
}


def _seed_traffic(api: Api) -> None:
    from mailwarden.store import traffic

    db = Database(api.cli.url)
    try:
        with db.transaction() as tx:
            for name in ("a.test", "b.test"):
                domain_id = tx.scalar("SELECT id FROM domains WHERE name = ?", (name,))
                traffic.add(tx, domain_id, "2026-01-05", 3, 300, 1, 100)
    finally:
        db.close()


def _seed_b(c: httpx.Client) -> None:
    for d in ("a.test", "b.test"):
        assert c.post("/domains", json={"name": d}).status_code == 201
        assert (
            c.post("/mailboxes", json={"address": f"u@{d}", "password": "pw1"}).status_code == 201
        )
    steps = [
        ("post", "/aliases", {"source": "al@b.test", "destinations": ["u@b.test"]}),
        ("put", "/forwards/u@b.test", {"destinations": ["f@ext.test"], "keep_copy": True}),
        ("post", "/send-as", {"login": "u@b.test", "address": "boss@b.test"}),
        ("post", "/send-as", {"login": "u@a.test", "address": "boss@ext.test"}),
        ("put", "/rate-limits/hour/b.test", {"messages": 100}),
        ("put", "/spam/b.test", {"action": "folder", "threshold": 5.0}),
        ("post", "/spam/b.test/lists", {"kind": "block", "pattern": "spammer@bad.test"}),
        ("put", "/vacation/u@b.test", {"subject": "off", "body": "back soon"}),
        ("post", "/relay-networks", {"network": "10.0.0.0/8"}),
        ("post", "/lists", {"address": "team@b.test", "owners": ["u@b.test"]}),
        ("post", "/lists/team@b.test/members", {"members": ["u@b.test"]}),
        ("post", "/fetch-accounts", BODIES[("post", "/fetch-accounts")]),
    ]
    for method, path, body in steps:
        r = c.request(method.upper(), path, json=body)
        assert r.status_code in (200, 201), (path, r.text)


def test_domain_admin_isolation_on_every_endpoint(api: Api) -> None:
    with api.client(api.admin) as c:
        _seed_b(c)
        spec = c.get("/openapi.json").json()
    _seed_traffic(api)
    before = api.rows("SELECT action, object FROM audit_log ORDER BY id")
    token = api.token("onlyA", "--role", "domain-admin", "--domain", "a.test")
    walked = 0
    with api.client(token) as c:
        for template, methods in spec["paths"].items():
            path = template.removeprefix("/api/v1")
            if path.startswith("/me") or path == "/openapi.json":
                continue
            for method in methods:
                given = PARAMS | next(
                    (v for k, v in PARAMS_UNDER.items() if path.startswith(k)), {}
                )
                params = {k: v for k, v in given.items() if "{" + k + "}" in path}
                url = path.format(**params)
                needs_body = "requestBody" in methods[method]
                assert not needs_body or (method, path) in BODIES, f"add {method} {path} to BODIES"
                r = c.request(
                    method.upper(),
                    url,
                    json=BODIES.get((method, path)) if needs_body else None,
                    params=QUERY.get((method, path)),
                )
                walked += 1
                if "{" in path or method != "get":
                    assert r.status_code in (403, 404), (method, url, r.status_code, r.text)
                    continue
                # a list: 200 without a trace of b.test, or 403 for global objects
                assert r.status_code in (200, 403), (method, url, r.text)
                assert "b.test" not in r.text, (url, r.text)
    assert walked >= 40
    after = api.rows("SELECT action, object FROM audit_log ORDER BY id")
    assert after[: len(before)] == before
    assert [r for r in after[len(before) :] if r["action"] != "token.create"] == []


def test_policy_objects_through_the_api(api: Api) -> None:
    with api.client(api.admin) as c:
        _seed_b(c)
        r = c.get("/spam/b.test")
        assert r.json()["own"] == {"action": "folder", "threshold": 5.0, "enforce": False}
        assert c.get("/spam/b.test/lists").json()["items"][0]["pattern"] == "spammer@bad.test"
        assert c.get("/vacation/u@b.test").json()["subject"] == "off"
        limits = c.get("/rate-limits").json()["items"]
        assert limits == [
            {
                "scope": "b.test",
                "kind": "domain",
                "period": "hour",
                "messages": 100,
                "recipients": 0,
            }
        ]
        grants = c.get("/send-as", params={"login": "u@b.test"}).json()["items"]
        assert grants == [{"login": "u@b.test", "address": "boss@b.test"}]
        r = c.put("/spam/u@b.test", json={"enforce": True})
        assert r.status_code == 422
        assert c.delete("/send-as/u@b.test/boss@b.test").status_code == 204
        assert c.delete("/rate-limits/hour/b.test").status_code == 204
        assert c.delete("/rate-limits/hour/b.test").status_code == 404
        assert c.delete("/relay-networks/10.0.0.0/8").status_code == 204
        _seed_traffic(api)
        rows = c.get("/traffic", params={"since": "2026-01-01", "until": "2026-01-31"}).json()
        assert [(r["day"], r["domain"], r["bytes_in"]) for r in rows["items"]] == [
            ("2026-01-05", "a.test", 300),
            ("2026-01-05", "b.test", 300),
        ]
        r = c.get("/traffic", params={"since": "2026-02-01", "until": "2026-01-01"})
        assert r.status_code == 422
    with api.client() as c:
        auth = ("u@b.test", "pw1")
        r = c.put("/me/vacation", auth=auth, json={"subject": "Urlaub", "body": "bis bald"})
        assert r.status_code == 200 and r.json()["subject"] == "Urlaub"
        r = c.put("/me/spam", auth=auth, json={"action": "tag"})
        assert r.status_code == 200 and r.json()["own"]["action"] == "tag"
        assert c.get("/vacation/u@b.test", auth=auth).status_code == 401
    out = json.loads(api.cli.ok("vacation", "show", "u@b.test", "--json"))
    assert out["subject"] == "Urlaub"  # the CLI and the API read the same ops


def test_mailing_lists_through_the_api(api: Api) -> None:
    with api.client(api.admin) as c:
        for d in ("l.test", "m.test"):
            assert c.post("/domains", json={"name": d}).status_code == 201
        body = {"address": "team@l.test", "owners": ["boss@ext.test"]}
        r = c.post("/lists", json=body)
        assert r.status_code == 201, r.text
        assert r.headers["location"] == "/api/v1/lists/team%40l.test" and r.headers["etag"]
        assert r.json()["transport"] == "mlmmj:l.test/team"
        assert error_of(c.post("/lists", json=body)) == "conflict"
        got = c.get("/lists/team@l.test")
        assert got.status_code == 200 and got.json() == r.json()
        r = c.post("/lists/team@l.test/members", json={"members": ["m1@ext.test", "m2@ext.test"]})
        assert r.status_code == 200 and r.json() == {
            "added": ["m1@ext.test", "m2@ext.test"],
            "changed": [],
        }
        first = c.get("/lists/team@l.test/members", params={"limit": 1}).json()
        assert [m["address"] for m in first["items"]] == ["m1@ext.test"]
        rest = c.get("/lists/team@l.test/members", params={"cursor": first["next_cursor"]})
        assert rest.json() == {
            "items": [{"address": "m2@ext.test", "mode": "normal", "moderator": False}],
            "next_cursor": None,
        }
        assert c.delete("/lists/team@l.test/members/m2@ext.test").status_code == 204
        r = c.delete("/lists/team@l.test/members/m2@ext.test")
        assert r.status_code == 404 and error_of(r) == "not_found"
        tag = c.get("/lists/team@l.test").headers["etag"]
        change = {"moderated": True, "add_moderators": ["m1@ext.test"]}
        r = c.put("/lists/team@l.test/moderation", json=change, headers={"If-Match": tag})
        assert r.status_code == 200 and r.json()["moderators"] == ["m1@ext.test"]
        assert r.json()["moderated"] is True and r.headers["etag"] != tag
        r = c.put("/lists/team@l.test/moderation", json=change, headers={"If-Match": tag})
        assert r.status_code == 412
        r = c.put("/lists/team@l.test/moderation", json={"add_moderators": ["no@ext.test"]})
        assert r.status_code == 422
        listed = c.get("/lists", params={"domain": "l.test"}).json()
        assert [x["address"] for x in listed["items"]] == ["team@l.test"]
        assert listed["items"][0]["members"] == 1
        via_api = c.get("/lists/team@l.test").json()
    assert json.loads(api.cli.ok("list", "show", "team@l.test", "--json")) == via_api
    other = api.token("m-admin", "--role", "domain-admin", "--domain", "m.test")
    with api.client(other) as c:
        hidden, missing = c.get("/lists/team@l.test"), c.get("/lists/zz@l.test")
        assert hidden.status_code == missing.status_code == 404
        assert c.get("/lists").json()["items"] == []
        assert c.get("/lists", params={"domain": "l.test"}).status_code == 404
        assert (
            c.post("/lists", json={"address": "x@l.test", "owners": ["o@m.test"]}).status_code
            == 404
        )
        assert c.delete("/lists/team@l.test").status_code == 404
        r = c.post("/lists", json={"address": "own@m.test", "owners": ["o@m.test"]})
        assert r.status_code == 201
    readonly = api.token("ro", "--role", "readonly")
    with api.client(readonly) as c:
        assert c.get("/lists/team@l.test").status_code == 200
        r = c.post("/lists/team@l.test/members", json={"members": ["m3@ext.test"]})
        assert r.status_code == 403 and error_of(r) == "forbidden"
    with api.client(api.admin) as c:
        assert c.delete("/lists/team@l.test").status_code == 204
        assert c.get("/lists/team@l.test").status_code == 404
    actions = [
        r["action"] for r in api.rows("SELECT action FROM audit_log WHERE domain = 'l.test'")
    ]
    assert [a for a in actions if a.startswith("list.")] == [
        "list.add",
        "list.subscribe",
        "list.unsubscribe",
        "list.unsubscribe",
        "list.moderate",
        "list.remove",
    ]


def test_fetch_accounts_through_the_api_password_write_only(api: Api) -> None:
    from mailwarden.fetch import secret

    remote = "Remote-S3cret-pw"
    with api.client(api.admin) as c:
        for d in ("f.test", "g.test"):
            assert c.post("/domains", json={"name": d}).status_code == 201
            r = c.post("/mailboxes", json={"address": f"u@{d}", "password": "pw1"})
            assert r.status_code == 201
        body = {
            "mailbox": "u@f.test",
            "protocol": "imap",
            "host": "IMAP.Ext.test",
            "username": "remote-user",
            "password": remote,
            "folder": "Archive",
        }
        r = c.post("/fetch-accounts", json=body)
        assert r.status_code == 201, r.text
        made = r.json()
        assert "password" not in made and "password_enc" not in made and remote not in r.text
        assert r.headers["location"] == f"/api/v1/fetch-accounts/{made['id']}"
        assert (made["host"], made["port"], made["tls"]) == ("imap.ext.test", 993, "tls")
        got = c.get(f"/fetch-accounts/{made['id']}")
        assert got.json() == made and got.headers["etag"] == r.headers["etag"]
        assert remote not in got.text
        listed = c.get("/fetch-accounts", params={"mailbox": "u@f.test"}).json()
        assert listed == {"items": [made], "next_cursor": None}
        assert c.get("/fetch-accounts", params={"mailbox": "u@g.test"}).json()["items"] == []
        r = c.post("/fetch-accounts", json={**body, "protocol": "smtp"})
        assert r.status_code == 422 and error_of(r) == "invalid" and remote not in r.text
        r = c.post("/fetch-accounts", json={k: v for k, v in body.items() if k != "password"})
        assert r.status_code == 422
        r = c.post("/fetch-accounts", json={**body, "mailbox": "ghost@f.test"})
        assert r.status_code == 404
    other = api.token("g-admin", "--role", "domain-admin", "--domain", "g.test")
    with api.client(other) as c:
        hidden, missing = c.get(f"/fetch-accounts/{made['id']}"), c.get("/fetch-accounts/99999")
        assert hidden.status_code == missing.status_code == 404
        assert c.get("/fetch-accounts").json()["items"] == []
        assert c.post("/fetch-accounts", json=body).status_code == 404
        assert c.delete(f"/fetch-accounts/{made['id']}").status_code == 404
    readonly = api.token("ro", "--role", "readonly")
    with api.client(readonly) as c:
        assert c.get(f"/fetch-accounts/{made['id']}").status_code == 200
        r = c.post("/fetch-accounts", json={**body, "mailbox": "u@g.test"})
        assert r.status_code == 403
    stored = api.rows("SELECT password_enc FROM fetch_accounts")
    assert len(stored) == 1 and remote not in json.dumps(stored)
    key_file = api.cli.config_path.parent / f"{api.cli.config_path.stem}.fetch.key"
    assert secret.decrypt(secret.load_key(str(key_file)), stored[0]["password_enc"]) == remote
    shown = json.loads(api.cli.ok("fetch", "show", str(made["id"]), "--json"))
    assert shown["username"] == "remote-user" and shown["folder"] == "Archive"
    with api.client(api.admin) as c:
        assert c.delete(f"/fetch-accounts/{made['id']}").status_code == 204
        assert c.get(f"/fetch-accounts/{made['id']}").status_code == 404
    audit = json.dumps(api.rows("SELECT * FROM audit_log"), default=str)
    assert remote not in audit
    actions = [r["action"] for r in api.rows("SELECT action FROM audit_log")]
    assert actions.count("fetch.add") == 1 and actions.count("fetch.remove") == 1
    time.sleep(0.2)
    assert remote not in api.log.read_text()


def test_me_fetch_own_accounts_only(api: Api) -> None:
    remote = "My-Remote-Pw-9"
    with api.client(api.admin) as c:
        assert c.post("/domains", json={"name": "mf.test"}).status_code == 201
        for who in ("ann", "bob"):
            r = c.post("/mailboxes", json={"address": f"{who}@mf.test", "password": "pw1"})
            assert r.status_code == 201
        r = c.post(
            "/fetch-accounts",
            json={
                "mailbox": "bob@mf.test",
                "protocol": "pop3",
                "host": "pop.ext.test",
                "username": "bob",
                "password": "bobs-remote",
            },
        )
        bobs = r.json()["id"]
    ann = ("ann@mf.test", "pw1")
    body = {"protocol": "imap", "host": "imap.ext.test", "username": "ann", "password": remote}
    with api.client() as c:
        r = c.post("/me/fetch", auth=ann, json=body)
        assert r.status_code == 201, r.text
        mine = r.json()
        assert mine["mailbox"] == "ann@mf.test" and remote not in r.text
        assert r.headers["location"] == f"/api/v1/me/fetch/{mine['id']}"
        r = c.post("/me/fetch", auth=ann, json={**body, "mailbox": "bob@mf.test"})
        assert r.status_code == 422  # no mailbox field: always the caller's own
        assert c.get("/me/fetch", auth=ann).json() == {"items": [mine], "next_cursor": None}
        assert c.get(f"/me/fetch/{mine['id']}", auth=ann).json() == mine
        hidden, missing = c.get(f"/me/fetch/{bobs}", auth=ann), c.get("/me/fetch/99999", auth=ann)
        assert hidden.status_code == missing.status_code == 404
        assert c.delete(f"/me/fetch/{bobs}", auth=ann).status_code == 404
        assert c.get("/me/fetch").status_code == 401
        assert c.delete(f"/me/fetch/{mine['id']}", auth=ann).status_code == 204
        assert c.get("/me/fetch", auth=ann).json()["items"] == []
    rows = api.rows("SELECT actor, action FROM audit_log WHERE action LIKE 'fetch.%'")
    assert [r["action"] for r in rows] == ["fetch.add", "fetch.add", "fetch.remove"]
    assert rows[1]["actor"] == "me:ann@mf.test@127.0.0.1"
    audit = json.dumps(api.rows("SELECT * FROM audit_log"), default=str)
    assert remote not in audit and "bobs-remote" not in audit
    time.sleep(0.2)
    assert remote not in api.log.read_text()


def test_pop_before_smtp_entries_in_relay_networks(api: Api) -> None:
    """A POP-before-SMTP entry (made by a mail login) shows with its source and expiry."""
    api.cli.ok("relay", "allow-login", "192.0.2.7", "--minutes", "5")
    with api.client(api.admin) as c:
        c.post("/relay-networks", json={"network": "10.1.0.0/16"})
        items = c.get("/relay-networks").json()["items"]
        by_source = {e["source"]: e for e in items}
        login = by_source["pop-before-smtp"]
        assert login["network"].startswith("192.0.2.7") and login["status"] == "temporary"
        assert login["expires"] and login["expired"] is False
        assert by_source["admin"]["expires"] is None
        one_entry = c.get(f"/relay-networks/{login['network']}")
        assert one_entry.status_code == 200 and one_entry.json() == login


def test_schemathesis_fuzz_finds_no_5xx_and_no_spec_mismatch(api: Api, tmp_path: Path) -> None:
    """Every endpoint fuzzed from the OpenAPI spec (schemathesis): no 5xx, every status
    code, content type and body as the spec says."""
    import shutil
    import sys

    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("schemathesis not installed (pip install .[test])")
    with api.client(api.admin) as c:
        c.post("/domains", json={"name": "fuzz.test"})
    run = subprocess.run(
        [exe, "run", f"{api.url}/api/v1/openapi.json"]
        + ["-H", f"Authorization: Bearer {api.admin}"]
        + [
            "-c",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
        ]
        + ["-n", "8", "--seed", "11", "--report-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-4000:]
    assert " 500 " not in api.log.read_text()


def test_cli_and_api_give_the_same_answers(api: Api) -> None:
    """Both go through mailwarden.ops: the same records and the same refusals."""
    api.cli.ok("domain", "add", "same.test", "--max-mailboxes", "3")
    api.cli.ok("user", "add", "cli@same.test", "--password-stdin", "--quota", "1G", stdin="pw\n")
    with api.client(api.admin) as c:
        r = c.post("/mailboxes", json={"address": "api@same.test", "password": "pw"})
        assert r.status_code == 201
        r = c.put("/mailboxes/api@same.test", json={"quota_bytes": 1024**3})
        via_api = c.get("/mailboxes/cli@same.test").json()
        dup = c.post("/mailboxes", json={"address": "cli@same.test", "password": "pw"})
        bad = c.post("/aliases", json={"source": "cli@same.test", "destinations": ["x@ext.test"]})
        domain_api = c.get("/domains/same.test").json()
    via_cli = json.loads(api.cli.ok("user", "show", "cli@same.test", "--json"))
    assert via_cli == via_api
    other_cli = json.loads(api.cli.ok("user", "show", "api@same.test", "--json"))
    assert {
        k: v for k, v in other_cli.items() if k not in ("address", "maildir", "created_at")
    } == {k: v for k, v in via_api.items() if k not in ("address", "maildir", "created_at")}
    cli_dup = api.cli.fails("user", "add", "cli@same.test", "--password-stdin", stdin="pw\n")
    assert dup.status_code == 409 and cli_dup == f"mailwarden: {dup.json()['error']['message']}"
    cli_bad = api.cli.fails("alias", "add", "cli@same.test", "x@ext.test")
    assert cli_bad == f"mailwarden: {bad.json()['error']['message']}"
    assert json.loads(api.cli.ok("domain", "show", "same.test", "--json")) == domain_api


def _set_usage(api: Api, address: str, nbytes: int, messages: int) -> None:
    from mailwarden.store import quota

    db = Database(api.cli.url)
    try:
        with db.transaction() as tx:
            box = tx.scalar("SELECT id FROM mailboxes WHERE address = ?", (address,))
            quota.set_usage(tx, int(box), nbytes, messages, 1_900_000_000)
    finally:
        db.close()


def test_quota_usage_list_filters_pages_and_scope(api: Api) -> None:
    with api.client(api.admin) as c:
        for d in ("qa.test", "qb.test"):
            assert c.post("/domains", json={"name": d}).status_code == 201
        for i in range(5):
            body = {"address": f"u{i}@qa.test", "password": "pw1", "quota_bytes": 1000}
            assert c.post("/mailboxes", json=body).status_code == 201
        body = {"address": "x@qb.test", "password": "pw1", "quota_messages": 10}
        assert c.post("/mailboxes", json=body).status_code == 201
    for i in range(5):
        _set_usage(api, f"u{i}@qa.test", 200 * i + 100, 1)  # 10 %, 30 %, ... 90 %
    _set_usage(api, "x@qb.test", 5, 10)  # messages at 100 %
    with api.client(api.admin) as c:
        one_box = c.get("/mailboxes/u4@qa.test/quota")
        assert one_box.status_code == 200 and one_box.headers["etag"]
        assert one_box.json()["percent"] == 90.0 and one_box.json()["used_bytes"] == 900
        seen, cursor = [], None
        while True:
            r = c.get("/quota", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200
            seen += [row["address"] for row in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"u{i}@qa.test" for i in range(5)] + ["x@qb.test"]
        over = c.get("/quota", params={"over": 50, "limit": 1})
        assert [r["address"] for r in over.json()["items"]] == ["u2@qa.test"]
        rest = c.get("/quota", params={"over": 50, "cursor": over.json()["next_cursor"]})
        assert [r["address"] for r in rest.json()["items"]] == [
            "u3@qa.test",
            "u4@qa.test",
            "x@qb.test",
        ]
        only_b = c.get("/quota", params={"domain": "qb.test"}).json()["items"]
        assert [r["address"] for r in only_b] == ["x@qb.test"]
        assert c.get("/quota", params={"domain": "nowhere.test"}).status_code == 404
        assert c.get("/quota", params={"over": -1}).status_code == 422
        assert c.get("/mailboxes/ghost@qa.test/quota").status_code == 404
        cli_rows = json.loads(api.cli.ok("quota", "list", "--over", "50", "--json"))
        assert cli_rows == over.json()["items"] + rest.json()["items"]
        assert json.loads(api.cli.ok("quota", "show", "u4@qa.test", "--json")) == one_box.json()
    token = api.token("qa-admin", "--role", "domain-admin", "--domain", "qa.test")
    with api.client(token) as c:
        assert [r["address"] for r in c.get("/quota").json()["items"]] == [
            f"u{i}@qa.test" for i in range(5)
        ]
        missing = c.get("/mailboxes/ghost@qb.test/quota")
        hidden = c.get("/mailboxes/x@qb.test/quota")
        assert hidden.status_code == missing.status_code == 404
        assert error_of(hidden) == "not_found" and "x@qb.test" in hidden.json()["error"]["message"]
        assert c.get("/quota", params={"domain": "qb.test"}).status_code == 404
    with api.client() as c:
        mine = c.get("/me/quota", auth=("u1@qa.test", "pw1"))
        assert mine.status_code == 200 and mine.json()["percent"] == 30.0
        assert c.get("/me", auth=("u1@qa.test", "pw1")).status_code == 200
    # /me is a first login too (seed 002's checkUserProvisioning): recorded and logged once
    first = [ln for ln in api.log.read_text().splitlines() if "first login: OK" in ln]
    assert len(first) == 1 and "address=u1@qa.test client=127.0.0.1" in first[0], first
    row = api.rows("SELECT provisioned_at, last_login FROM mailboxes WHERE address = 'u1@qa.test'")
    assert row[0]["provisioned_at"] is not None and row[0]["last_login"] is not None
