"""``[policy] workers`` and ``[lda] lmtp_workers``: the process counts serve and systemd
start the daemons with (the ``--workers`` flags override them)."""

from __future__ import annotations

import pytest

from mailwarden.config import MAX_WORKERS, from_dict
from mailwarden.errors import ConfigError


def test_defaults_are_one_process() -> None:
    settings = from_dict({})
    assert settings.policy.workers == 1
    assert settings.lda.lmtp_workers == 1


def test_set_in_the_file() -> None:
    settings = from_dict({"policy": {"workers": 2}, "lda": {"lmtp_workers": 4}})
    assert (settings.policy.workers, settings.lda.lmtp_workers) == (2, 4)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("policy", "workers", 0, "policy.workers must be 1..64"),
        ("policy", "workers", MAX_WORKERS + 1, "policy.workers must be 1..64"),
        ("lda", "lmtp_workers", -1, "lda.lmtp_workers must be 1..64"),
        ("lda", "lmtp_workers", "2", "lda.lmtp_workers must be int"),
        ("policy", "workers", True, "policy.workers must be int"),
    ],
)
def test_bad_values_are_refused(section: str, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict({section: {key: value}}, source="t.toml")
