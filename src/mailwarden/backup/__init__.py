"""Rolling backups and restore (``mailwarden backup run|list|verify|restore``).

What a backup is: one directory ``[backup] dir``/``YYYY-MM-DDTHHMMSSZ`` holding

``manifest.json``   what is in it: time, host, mail root, the database dump's and the
                    config's size and SHA-256, the mailboxes (address -> Maildir path),
                    the count and SHA-256 of ``files.jsonl``
``files.jsonl``     one line per file below ``mail/``: ``[path, size, mtime_ns, sha256]``
``database.sqlite`` or ``database.sql``   the consistent database dump (``store.backup``)
``config/mailwarden.toml``   the configuration file in use
``mail/``           the mail root as a hard-linked snapshot: a file already in the
                    previous backup (a Maildir message is never changed once delivered;
                    a flag change only renames it) is a hard link to that copy, so an
                    unchanged mailbox costs no space in the next backup

A backup is written under ``.partial-NAME`` and renamed when complete; only then are the
oldest beyond ``[backup] keep`` removed. A failed run (disk full ...) removes its partial
directory and leaves every earlier backup as it was.

Modules: ``manifest`` (format, path checks), ``snapshot`` (the hard-linked copy),
``run`` (run, list, rotate, verify), ``restore`` (mailboxes, domains, the database).
Errors: ``BackupError`` (``manifest``), one line for the operator.
"""
