"""``mailwarden setup``: the installer.

Asks (or takes ``--non-interactive`` flags for) the database, the mail domains, the
postmaster, the mail root and its owner, and where Postfix and Dovecot keep their
configuration; then plans every change (``plan``): the mailwarden TOML file, Postfix
``main.cf`` settings (applied with ``postconf -e``, only mailwarden's own keys), the SQL
map files and a ``master.cf`` block, Dovecot ``conf.d`` files and the SQL file, the
schema, the domains and the postmaster. ``--dry-run`` prints the plan as unified diffs
and commands; ``--apply`` carries it out and reloads Postfix and Dovecot when they run.

The files come from ``contrib/`` (``render``: the same templates CI tests). Text
setup owns inside a file shared with the admin sits between ``# BEGIN mailwarden`` and
``# END mailwarden`` (``markers``); nothing outside is touched. Re-running with the
same answers plans nothing.

``--relayhost [host]:port`` (``smarthost``) adds an ISP's smarthost: ``relayhost``, a
SASL password map (0600 root, the password read from stdin and shown as ``***``) and a
TLS policy entry that requires TLS to that server only; ``--relayhost none`` takes it
out again. The ``[smarthost]`` section of the TOML file remembers it (no password).

Dovecot's version (``dovecot --version``) picks the files: 2.3 (Debian 12) conf.d marker
blocks, or one ``conf.d/99-mailwarden.conf`` for 2.4 (Debian 13). A hosted domain is
taken out of ``mydestination`` (``classes``), where local(8) would bounce its mail.

Bad input stops in ``preflight`` with one line, before anything changes: Postfix or
Dovecot (or their SQL drivers) missing, an unsupported Dovecot version, main.cf missing
or broken, a database that refuses the connection or an SQLite file that cannot be
written, a mail root that cannot be created or written, a port in use, an invalid
existing config; ``plan`` stops the same way when a hosted domain is the machine's own
name (``$myhostname`` in ``mydestination``) or comes from a table there.
"""
