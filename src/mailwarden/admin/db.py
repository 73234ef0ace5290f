"""``mailwarden db init|upgrade|status``: create and migrate the schema.

``init`` creates the schema in an empty database (for SQLite it creates the file and its
directory); ``upgrade`` applies pending migrations, with ``--check`` it only lists them
and exits 1 when any are pending (for config management and monitoring); ``status``
shows the current and latest versions.
"""

from __future__ import annotations

import argparse

from mailwarden.admin.cli import add_json
from mailwarden.admin.context import Context
from mailwarden.store import migrate


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("db", help="create and upgrade the database schema")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    v = verbs.add_parser("init", help="create the schema in an empty database")
    add_json(v)
    v.set_defaults(handler=cmd_init)
    v = verbs.add_parser("upgrade", help="apply pending migrations")
    v.add_argument(
        "--check", action="store_true", help="only list pending migrations; exit 1 if any"
    )
    add_json(v)
    v.set_defaults(handler=cmd_upgrade)
    v = verbs.add_parser("status", help="show the schema version")
    add_json(v)
    v.set_defaults(handler=cmd_status)


def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    db = ctx.database(create=True)
    applied = migrate.init(db)
    version = applied[-1].version
    ctx.done(f"initialised {db.url.masked} at schema version {version}", version=version)
    return 0


def cmd_upgrade(ctx: Context, args: argparse.Namespace) -> int:
    db = ctx.database()
    st = migrate.status(db)
    if args.check:
        names = [f"{m.version:04d}_{m.name}" for m in st.pending]
        if ctx.json:
            ctx.show({"current": st.current, "latest": st.latest, "pending": names})
        elif names:
            ctx.say(f"schema version {st.current}; would apply: {', '.join(names)}")
        else:
            ctx.say(f"schema version {st.current} is current")
        return 1 if names else 0
    applied = migrate.upgrade(db)
    if ctx.json:
        ctx.show({"applied": [f"{m.version:04d}_{m.name}" for m in applied]})
    elif applied:
        ctx.say("applied: " + ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    else:
        ctx.say(f"schema version {st.current} is current; nothing to do")
    return 0


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    db = ctx.database()
    st = migrate.status(db)
    ctx.show(
        {
            "database": db.url.masked,
            "dialect": db.dialect,
            "current": st.current,
            "latest": st.latest,
            "pending": [f"{m.version:04d}_{m.name}" for m in st.pending],
        }
    )
    return 0
