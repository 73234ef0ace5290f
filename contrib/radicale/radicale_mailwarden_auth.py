"""Radicale auth plugin: CalDAV/CardDAV logins against the mailwarden schema.

A mailbox logs in to Radicale with its address and its mail password (the same hash
schemes Dovecot reads, see ``mailwarden.passwords``), if the mailbox and its
domain are active and its services bitfield includes calendar (2) or contacts (4)
(``mailwarden user set ADDRESS --services mail,calendar``; ``[api] provision`` is the
default for new mailboxes). A mailbox without either is refused as a wrong password
would be (401). The rule is mailwarden's own (``mailwarden.ops.logins.check``); this
module only adapts it to Radicale.

Radicale authenticates before it knows which collection a request touches, and a
calendar and an address book are told apart only by their stored properties, not by
the path: so the plugin gates the DAV login as a whole by (2|4) and cannot give a
mailbox calendars but no address books (docs/radicale.md).

Install: put this file on the Python path of the Radicale that runs (next to
mailwarden: same venv, or PYTHONPATH) and in Radicale's config::

    [auth]
    type = radicale_mailwarden_auth
    # optional: mailwarden's config file (default: $MAILWARDEN_CONFIG, then
    # /etc/mailwarden/mailwarden.toml)
    mailwarden_config = /etc/mailwarden/mailwarden.toml

The user Radicale runs as must read that file and the database (SQLite: the file, its
-wal/-shm and directory; MariaDB: a login with SELECT on ``mailboxes`` and ``domains``).
Refusals are logged by Radicale ("Failed login attempt ..."), with the reason at info
level here; a database that cannot be reached refuses the login and logs a warning.
"""

from __future__ import annotations

from typing import Any

from radicale import auth
from radicale.log import logger

from mailwarden import config
from mailwarden.errors import MailwardenError
from mailwarden.ops import logins
from mailwarden.ops.base import Env
from mailwarden.store.db import Database

PLUGIN_CONFIG_SCHEMA = {
    "auth": {
        "mailwarden_config": {
            "value": "",
            "help": "mailwarden's config file (default: $MAILWARDEN_CONFIG or /etc/mailwarden)",
            "type": str,
        }
    }
}


class Auth(auth.BaseAuth):  # type: ignore[misc]
    def __init__(self, configuration: Any) -> None:
        super().__init__(configuration.copy(PLUGIN_CONFIG_SCHEMA))
        path = self.configuration.get("auth", "mailwarden_config") or None
        settings = config.load(path)
        database = Database(
            settings.database.url, connect_timeout=settings.database.connect_timeout
        )
        self._env = Env(database, settings.mail)
        logger.info("mailwarden auth: %s (%s)", settings.source, database.url.masked)

    def _login(self, login: str, password: str) -> str:
        try:
            got = logins.check(self._env, login, password)
        except MailwardenError as exc:
            logger.warning("mailwarden auth: %s: login refused: %s", login, exc)
            return ""
        if not got.ok:
            logger.info("mailwarden auth: %s refused: %s", got.user, got.why)
            return ""
        return got.user
