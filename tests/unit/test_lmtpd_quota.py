"""The fast path of ``quota.parse`` (lmtpd parses ``maildirsize`` once per delivery)
gives exactly the line-by-line result, whatever the file holds."""

from __future__ import annotations

import random

from mailwarden.delivery import quota


def _line_by_line(data: bytes) -> tuple[int, int, int]:
    total = count = n = 0
    for line in data.decode("ascii", "replace").split("\n")[1:]:
        fields = line.split()
        if len(fields) < 2:
            continue
        try:  # as quota.parse always did: a bad count after a good size keeps the size
            total += int(fields[0])
            count += int(fields[1])
        except ValueError:
            continue
        n += 1
    return total, count, n


def test_fast_path_agrees_with_line_by_line() -> None:
    rng = random.Random(3)
    pieces = ["12 1\n", "-40 -1\n", "7 1", "\n", " 3 1\n", "5 1 9\n", "x 1\n", "1\t1\n", "0 0\n"]
    cases = [b"", b"0S,0C", b"0S,0C\n", b"100S\n5 1\n6 1\n", b"0S,0C\n" + b"2100 1\n" * 700]
    for _ in range(3000):
        body = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        cases.append(("1000S,10C\n" + body).encode())
    for data in cases:
        sf = quota.parse(data, 1.5)
        assert (sf.bytes, sf.messages, sf.lines) == _line_by_line(data), data
        assert (sf.length, sf.mtime) == (len(data), 1.5)
    assert (quota.parse(b"1000S,10C\n").max_bytes, quota.parse(b"1000S,10C\n").max_messages) == (
        1000,
        10,
    )
