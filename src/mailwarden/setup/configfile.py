"""The mailwarden TOML file setup writes.

Setup owns the whole file but keeps every setting it does not manage: the result holds
the managed keys (always) and any other key whose value differs from the built-in
default, in the order of ``config.Settings``. The text is a function of the settings
alone, so a re-run writes the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from mailwarden import config
from mailwarden.config import Settings
from mailwarden.setup.answers import Answers

HEADER = (
    "# mailwarden configuration, written by 'mailwarden setup'.\n"
    "# Keys not listed have their built-in defaults (docs/operations.md). Re-running setup\n"
    "# keeps every key it does not manage; comments are not kept.\n"
)

MANAGED = {
    "database": ("url",),
    "mail": ("root", "uid", "gid", "postmaster"),
    "lda": ("lmtp_listen",),
    "policy": ("listen",),
    "milter": ("listen", "clamd", "spamd"),
    "metrics": ("listen",),
}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(_value(v) for v in value) + "]"


def settings_for(a: Answers) -> Settings:
    """The settings the file will hold: the existing ones with the answers applied."""
    old = a.existing or Settings()
    return dataclasses.replace(
        old,
        database=dataclasses.replace(old.database, url=a.database_url),
        mail=dataclasses.replace(
            old.mail, root=a.mail_root, uid=a.mail_uid, gid=a.mail_gid, postmaster=a.postmaster
        ),
        lda=dataclasses.replace(old.lda, lmtp_listen=(a.lmtp_listen,)),
        policy=dataclasses.replace(old.policy, listen=(a.policy_listen,)),
        milter=dataclasses.replace(
            old.milter, listen=(a.milter_listen,), clamd=a.clamd, spamd=a.spamd
        ),
        metrics=dataclasses.replace(old.metrics, listen=a.metrics_listen),
        smarthost=_smarthost(a, old.smarthost),
        source=a.config_path,
    )


def _smarthost(a: Answers, old: config.SmarthostSettings) -> config.SmarthostSettings:
    """What the file records of the smarthost (never its password)."""
    sh = a.smarthost
    if sh is None:
        return old
    if not sh.relayhost:
        return config.SmarthostSettings()
    return config.SmarthostSettings(sh.relayhost, sh.user, sh.tls, sh.cafile)


def text(settings: Settings) -> str:
    out = [HEADER]
    defaults = Settings()
    for section in config._SECTIONS:
        current, default = getattr(settings, section), getattr(defaults, section)
        lines = []
        for f in dataclasses.fields(current):
            value = getattr(current, f.name)
            if f.name in MANAGED.get(section, ()) or value != getattr(default, f.name):
                lines.append(f"{f.name} = {_value(value)}")
        if lines:
            out.append(f"\n[{section}]\n" + "\n".join(lines) + "\n")
    rendered = "".join(out)
    config.from_dict(_parse(rendered), source="(generated)")  # never write what we can't read
    return rendered


def _parse(rendered: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(rendered)
