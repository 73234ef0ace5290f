"""The fetcher's key file and the remote passwords encrypted with it.

A remote password must be recoverable (the fetcher logs in with it), so it cannot be
hashed like a mailbox password: it is encrypted with Fernet (``cryptography``: AES-128-CBC
and HMAC-SHA256, authenticated, a maintained library) under a key kept in a file of its
own, ``[fetch] key_file`` (default /etc/mailwarden/fetch.key), never in the database. A
database dump or backup alone does not reveal the passwords; the key file must be backed
up separately (docs/fetch.md).

Who calls it: ``admin.fetch`` (``ensure_key`` on the first ``fetch add``, ``encrypt``) and
``fetch.run`` (``load_key``, ``decrypt``).

The key file is created with mode 0600 (``O_EXCL``: an existing key is never
overwritten); a key file that group or others may read is refused, as ssh refuses such a
private key. Nothing here logs a password or puts one in a message.

Errors: ``ConfigError`` (one line naming the file) for a missing, unreadable, too open or
malformed key file; ``ConfigError`` from ``decrypt`` when a password was encrypted under
another key.
"""

from __future__ import annotations

import contextlib
import os
import stat

from cryptography.fernet import Fernet, InvalidToken

from mailwarden.errors import ConfigError


def ensure_key(path: str) -> bool:
    """Create the key file (0600) if it does not exist; True if it was created now."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o750, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise ConfigError(f"fetch key file {path}: cannot create: {exc.strerror}") from None
    try:
        os.write(fd, Fernet.generate_key() + b"\n")
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise ConfigError(f"fetch key file {path}: cannot write: {exc.strerror}") from None
    os.close(fd)
    return True


def load_key(path: str) -> Fernet:
    """The key of ``path``; ``ConfigError`` when missing, readable by others or malformed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ConfigError(
            f"fetch key file {path} does not exist (created by the first 'mailwarden fetch add')"
        ) from None
    except OSError as exc:
        raise ConfigError(f"fetch key file {path}: cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"fetch key file {path} is open to others (mode {mode:04o}): chmod 600 it"
            )
        data = f.read().strip()
    try:
        return Fernet(data)
    except (ValueError, TypeError):
        raise ConfigError(f"fetch key file {path}: not a Fernet key") from None


def encrypt(key: Fernet, password: str) -> str:
    return key.encrypt(password.encode("utf-8")).decode("ascii")


def decrypt(key: Fernet, token: str, what: str = "the password") -> str:
    try:
        return key.decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError, UnicodeError):
        raise ConfigError(
            f"cannot decrypt {what}: it was encrypted under another key file "
            "(add the account again with its password)"
        ) from None
