"""contrib/prometheus and contrib/systemd: every PromQL expression names only metrics
mailwarden exports (or ``up``); the systemd units are valid and hardened."""

from __future__ import annotations

import configparser
import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mailwarden import metrics

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
# PromQL words that look like metric names but are functions, keywords or label names.
_WORD = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    for name in dir(metrics):
        cls = getattr(metrics, name)
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and hasattr(cls, "create"):
            cls.create(registry)
    names = {"up"}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            names.update(name + s for s in SUFFIXES.get(kind, ()))
    return names


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that are metric names (not inside {} or [])."""
    text = re.sub(r'"[^"]*"', "", expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in _WORD.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if word in {"and", "or", "unless", "bool", "offset", "inf", "nan", "e"}:
            continue
        names.add(word)
    return names


def alert_exprs() -> list[str]:
    """Every ``expr:`` of alerts.yml, plain or ``|`` block (no YAML library needed)."""
    lines = (CONTRIB / "prometheus/alerts.yml").read_text().splitlines()
    exprs = []
    for i, line in enumerate(lines):
        key, sep, value = line.strip().partition("expr:")
        if key or not sep:
            continue
        if value.strip() != "|":
            exprs.append(value.strip())
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for more in lines[i + 1 :]:
            if more.strip() and len(more) - len(more.lstrip()) <= indent:
                break
            block.append(more.strip())
        exprs.append(" ".join(block).strip())
    return exprs


def dashboard_exprs() -> list[str]:
    data = json.loads((CONTRIB / "prometheus/grafana-dashboard.json").read_text())
    return [t["expr"] for p in data["panels"] for t in p.get("targets", [])]


def test_metric_name_parser() -> None:
    expr = 'sum by (le) (rate(mailwarden_x_bucket{a="b c"}[5m])) / clamp_min(up, 1) > 0.2'
    assert metric_names(expr) == {"mailwarden_x_bucket", "up"}


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_expressions_use_exported_metrics(source: str) -> None:
    exprs = alert_exprs() if source == "alerts" else dashboard_exprs()
    assert exprs
    known = exported_names()
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= known, f"{sorted(names - known)} not exported: {expr}"


def test_alerts_cover_the_required_conditions() -> None:
    joined = "\n".join(alert_exprs())
    for needed in (
        "mailwarden_serve_up",
        "mailwarden_milter_scanner_errors_total",
        'result="defer"',
        'outcome="tempfail"',
    ):
        assert needed in joined


def test_alert_count_matches_yaml() -> None:
    text = (CONTRIB / "prometheus/alerts.yml").read_text()
    assert len(alert_exprs()) == text.count("- alert:") == 7


def test_prometheus_scrapes_serve_endpoint() -> None:
    text = (CONTRIB / "prometheus/prometheus.yml").read_text()
    assert "job_name: mailwarden" in text
    assert "- 127.0.0.1:9190" in text
    assert "alerts.yml" in text


UNITS = sorted((CONTRIB / "systemd").glob("*.service"))
TIMERS = sorted((CONTRIB / "systemd").glob("*.timer"))
REQUIRED = (
    "User",
    "Group",
    "ProtectSystem",
    "ReadWritePaths",
    "RuntimeDirectory",
    "PrivateTmp",
    "NoNewPrivileges",
    "ProtectHome",
    "ExecStart",
)


def test_all_units_present() -> None:
    names = {u.name for u in UNITS}
    assert names >= {
        "mailwarden.service",
        "mailwarden-policyd.service",
        "mailwarden-milter.service",
        "mailwarden-lmtpd.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_is_hardened(unit: Path) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    service = parser["Service"]
    if service.get("Type") == "oneshot":  # a job its .timer starts (mailwarden-backup)
        timer = parser.__class__(strict=False, interpolation=None)
        timer.read(unit.with_suffix(".timer"))
        assert timer["Install"]["WantedBy"] == "timers.target", f"{unit.name}: no .timer"
        daemon_only = ("RuntimeDirectory",)
    else:
        assert parser["Install"]["WantedBy"]
        assert service["RuntimeDirectory"] == "mailwarden"
        daemon_only = ()
    for key in REQUIRED:
        assert key in daemon_only or service.get(key), f"{unit.name}: {key}= missing"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert "mailwarden" in service["ExecStart"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_systemd_analyze_verify() -> None:
    proc = subprocess.run(
        ["systemd-analyze", "verify", *map(str, UNITS), *map(str, TIMERS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        # the venv is not installed on the test machine
        if line.strip() and "is not executable: No such file or directory" not in line
    ]
    assert not problems, "\n".join(problems)
