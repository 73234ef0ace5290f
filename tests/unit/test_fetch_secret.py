"""The fetcher's key file and encrypted remote passwords (``mailwarden.fetch.secret``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mailwarden import config
from mailwarden.errors import ConfigError
from mailwarden.fetch import secret


def test_key_created_once_0600_and_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "etc" / "fetch.key")
    assert secret.ensure_key(path) is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = Path(path).read_bytes()
    assert secret.ensure_key(path) is False  # never overwritten
    assert Path(path).read_bytes() == first
    key = secret.load_key(path)
    token = secret.encrypt(key, "pässwörd 'x'")
    assert "pässwörd" not in token and "x'" not in token
    assert secret.decrypt(key, token) == "pässwörd 'x'"


def test_key_open_to_others_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "fetch.key")
    secret.ensure_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match=r"open to others \(mode 0644\): chmod 600"):
        secret.load_key(path)


@pytest.mark.parametrize(
    ("content", "match"), [(None, "does not exist"), (b"junk\n", "not a Fernet key")]
)
def test_bad_key_files(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "fetch.key"
    if content is not None:
        path.write_bytes(content)
        os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match=match):
        secret.load_key(str(path))


def test_password_under_another_key_is_one_line_without_secret(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a.key"), str(tmp_path / "b.key")
    secret.ensure_key(a)
    secret.ensure_key(b)
    token = secret.encrypt(secret.load_key(a), "hunter2")
    with pytest.raises(ConfigError) as info:
        secret.decrypt(secret.load_key(b), token, "the password of fetch account 3")
    text = str(info.value)
    assert "fetch account 3" in text and "hunter2" not in text and "\n" not in text


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"key_file": "rel.key"}, "must be absolute"),
        ({"smtp": "localhost"}, "fetch.smtp must be HOST:PORT"),
        ({"workers": 0}, "fetch.workers"),
        ({"poll": 0.0}, "fetch.poll"),
        ({"nope": 1}, "unknown key fetch.nope"),
    ],
)
def test_fetch_settings_validated(values: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config.from_dict({"fetch": values})


def test_fetch_settings_defaults() -> None:
    f = config.from_dict({}).fetch
    assert (f.key_file, f.smtp, f.workers) == ("/etc/mailwarden/fetch.key", "127.0.0.1:25", 4)
