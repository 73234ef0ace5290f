"""lmtpd's shortcut for MAIL/RCPT addresses gives exactly aiosmtpd's answer."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiosmtpd.lmtp import LMTP

from mailwarden.lda.lmtp import _LMTP, fast_addr


class _Handler:
    pass


@pytest.fixture
def parsers() -> tuple[LMTP, _LMTP]:
    loop = asyncio.new_event_loop()
    yield LMTP(_Handler(), loop=loop), _LMTP(_Handler(), loop=loop)  # type: ignore[misc]
    loop.close()


def test_fast_path_agrees_with_aiosmtpd(parsers: tuple[LMTP, _LMTP]) -> None:
    base, ours = parsers
    rng = random.Random(7)
    atom, tail = "ab.-+_!#'=/Z9", 'ab =()\t"<>@.:;[]\\,'
    cases = ["<a@b.c>", "<a@b.c> BODY=8BITMIME", "<a@b.c> (x) B=1", "<>", "<a..b@c>", "a@b"]
    cases += ['<"q x"@b>', "<a@[1.2.3.4]>", "<@r:a@b>", "<ä@b.c>", "<a@b.c>\tX=1"]
    for _ in range(5000):
        local = "".join(rng.choice(atom) for _ in range(rng.randint(0, 6)))
        domain = "".join(rng.choice(atom) for _ in range(rng.randint(0, 6)))
        rest = "".join(rng.choice(tail) for _ in range(rng.randint(0, 8)))
        cases.append(f"<{local}@{domain}>{rest}")
    shortcut = 0
    for case in cases:
        assert ours._getaddr(case) == base._getaddr(case), case
        shortcut += fast_addr(case) is not None
    assert shortcut > 1000
