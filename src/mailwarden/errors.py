"""The exception tree every mailwarden module raises.

Who raises what:

``MailwardenError``          base; its ``str()`` is a one-line message fit for an operator
  ``UsageError``             the operator asked for something invalid (bad address, size,
                             duration, unknown domain, limit exceeded, loop ...); CLI exit 1
    ``NotFound``             the named object does not exist
    ``Conflict``             it already exists, or would break a uniqueness/foreign-key rule
      ``Stale``              a change made against an older version (API ``If-Match``)
  ``Forbidden``              the caller's role may not do this (API: 403; ops layer)
  ``ConfigError``            the configuration file is missing, unreadable or invalid
  ``StoreError``             the database failed in a way that is not the caller's fault
    ``StoreUnavailable``     cannot connect / connection lost: adapters answer 4.3.0

Adapters (policyd, milter, LDA, LMTP) never let any of these escape as a 2xx or 5xx:
anything they do not expect becomes a temporary failure (DSN 4.3.0).
"""


class MailwardenError(Exception):
    """Base class. The message is one line, names the problem, and contains no secret."""


class UsageError(MailwardenError):
    """An operator mistake: invalid input or an impossible request."""


class NotFound(UsageError):
    """The named domain, mailbox, alias ... does not exist."""


class Conflict(UsageError):
    """The object exists already, or the change would violate a database constraint."""


class Stale(Conflict):
    """The object changed since the caller read it (its ETag no longer matches)."""


class Forbidden(MailwardenError):
    """The caller's role does not allow this action (a read-only token writing ...)."""


class ConfigError(MailwardenError):
    """The configuration file is invalid; the message names the file and the key."""


class StoreError(MailwardenError):
    """The database failed (not the caller's fault)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached; callers answer a temporary failure."""
