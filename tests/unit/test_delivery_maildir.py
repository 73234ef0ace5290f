"""Maildir writing, Maildir++ quota and header parsing, on a real temporary filesystem."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mailwarden.delivery import headers, quota
from mailwarden.delivery.maildir import MaildirError, Names, open_maildir, vsize


def _open(root: Path, rel: str = "example.test/alice"):
    return open_maildir(str(root), str(root / rel), None)


def test_deliver_creates_maildir_and_names_sizes(tmp_path: Path) -> None:
    data = b"Subject: x\n\nline1\nline2\n"
    with _open(tmp_path) as box:
        name = box.deliver(data, Names())
    new = tmp_path / "example.test/alice/new"
    assert (new / name).read_bytes() == data
    assert f",S={len(data)},W={len(data) + 4}" in name
    assert ":" not in name and "/" not in name
    assert not os.listdir(tmp_path / "example.test/alice/tmp")
    assert (tmp_path / "example.test/alice/cur").is_dir()


def test_spooled_body_written_in_chunks_like_bytes(tmp_path: Path) -> None:
    """A ``Body`` past its threshold (a temp file) with a prefix: the same file and the
    same ,S=/,W= as the bytes would give, written in several chunks."""
    from mailwarden.delivery.body import Body, Prefixed

    data = b"Subject: x\n\n" + b"line\r\n" * 250_000 + b"\r\r\nend\n"  # > CHUNK
    body = Body(threshold=1000)
    for i in range(0, len(data), 7777):  # pieces that cut lines and CRLFs anywhere
        body.write(data[i : i + 7777])
    assert body.on_disk and body.size == len(data) and body.vsize == vsize(data)
    prefix = b"Return-Path: <s@x>\n"
    message = Prefixed(prefix, body)
    assert len(list(message.chunks())) > 1
    with _open(tmp_path) as box:
        name = box.deliver(message, Names())
    assert (tmp_path / "example.test/alice/new" / name).read_bytes() == prefix + data
    assert f",S={len(prefix + data)},W={vsize(prefix + data)}" in name
    body.close()
    body.close()  # idempotent


def test_vsize_counts_lf_as_crlf() -> None:
    assert vsize(b"a\nb\r\n") == 6


def test_names_are_unique() -> None:
    names = Names()
    assert len({names.make(1, 1) for _ in range(1000)}) == 1000


def test_symlinked_maildir_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "example.test").mkdir()
    (tmp_path / "example.test/alice").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(MaildirError) as info:
        _open(tmp_path)
    assert info.value.verdict.dsn == "4.3.0"
    assert not os.listdir(tmp_path / "elsewhere")


def test_symlinked_domain_dir_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "example.test").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(MaildirError):
        _open(tmp_path)
    assert not os.listdir(tmp_path / "elsewhere")


def test_symlink_in_tmp_name_is_not_followed(tmp_path: Path) -> None:
    with _open(tmp_path) as box:
        (tmp_path / "example.test/alice/tmp").rmdir()
        (tmp_path / "example.test/alice/tmp").symlink_to(tmp_path)
        with pytest.raises(OSError):
            box.deliver(b"x\n", Names())


def test_enospc_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with _open(tmp_path) as box:
        monkeypatch.setattr(os, "write", full)
        with pytest.raises(OSError) as info:
            box.deliver(b"x\n" * 1000, Names())
        monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert not os.listdir(tmp_path / "example.test/alice/new")
    assert not os.listdir(tmp_path / "example.test/alice/tmp")


def test_folder_created_and_subscribed_once(tmp_path: Path) -> None:
    with _open(tmp_path) as box:
        assert box.folder("Junk") == ".Junk"
        box.folder("Junk")
        box.deliver(b"spam\n", Names(), ".Junk")
    base = tmp_path / "example.test/alice"
    assert (base / ".Junk/maildirfolder").exists()
    assert (base / "subscriptions").read_text() == "Junk\n"
    assert len(os.listdir(base / ".Junk/new")) == 1


def test_subscriptions_v2_file_is_appended(tmp_path: Path) -> None:
    with _open(tmp_path) as box:
        (tmp_path / "example.test/alice/subscriptions").write_text("V\t2\n\nSent")
        box.folder("Junk")
    text = (tmp_path / "example.test/alice/subscriptions").read_text()
    assert text == "V\t2\n\nSent\nJunk\n"


# --- maildirsize ----------------------------------------------------------------------


def test_maildirsize_created_appended_and_recalculated(tmp_path: Path) -> None:
    names = Names()
    with _open(tmp_path) as box, box.lock(shared=True):
        u = quota.usage(box, 1000, 10)
        assert (u.bytes, u.messages) == (0, 0)
        for size in (100, 200):
            box.deliver(b"x" * size, names)
            quota.append(box, size)
        text = (tmp_path / "example.test/alice/maildirsize").read_text()
        assert text == "1000S,10C\n0 0\n100 1\n200 1\n"
        u = quota.usage(box, 1000, 10)
        assert (u.bytes, u.messages) == (300, 2)
        # new limits in the store: recalculated from the files' ,S= sizes
        u = quota.usage(box, 2000, 0)
    assert (u.bytes, u.messages) == (300, 2)
    assert (tmp_path / "example.test/alice/maildirsize").read_text() == "2000S\n300 2\n"


def test_recalc_when_large_and_when_over_quota(tmp_path: Path) -> None:
    names = Names()
    with _open(tmp_path) as box, box.lock(shared=True):
        quota.usage(box, 10_000, 0)
        box.deliver(b"x" * 50, names)
        quota.append(box, 50)
        # a stale file says over quota; recalculation finds only 50 bytes
        with open(tmp_path / "example.test/alice/maildirsize", "a") as f:
            f.write("20000 5\n")
        u = quota.usage(box, 10_000, 0, size=100)
        assert (u.bytes, u.messages) == (50, 1)
        with open(tmp_path / "example.test/alice/maildirsize", "a") as f:
            f.write("0 0\n" * 2000)  # >= 5120 bytes
        u = quota.usage(box, 10_000, 0)
    assert (u.bytes, u.messages) == (50, 1)
    assert (tmp_path / "example.test/alice/maildirsize").stat().st_size < 100


def test_recalc_skips_trash_and_reads_folders(tmp_path: Path) -> None:
    names = Names()
    with _open(tmp_path) as box:
        box.folder("Junk")
        box.folder("Trash")
        box.deliver(b"a" * 10, names)
        box.deliver(b"b" * 20, names, ".Junk")
        box.deliver(b"c" * 40, names, ".Trash")
        os.rename(  # a message read by the IMAP server, without ,S=
            next((tmp_path / "example.test/alice/new").iterdir()),
            tmp_path / "example.test/alice/cur/plain:2,S",
        )
        with box.lock(shared=False):
            sf = quota.recalculate(box, 0, 0)
    assert (sf.bytes, sf.messages) == (30, 2)


@pytest.mark.parametrize(
    ("line", "limits"),
    [("1000S,10C", (1000, 10)), ("10C", (0, 10)), ("", (0, 0)), ("5368709120S", (5368709120, 0))],
)
def test_parse_limits(line: str, limits: tuple[int, int]) -> None:
    assert quota.parse_limits(line) == limits
    if line:
        assert quota.format_limits(*limits) == line


def test_parse_tolerates_negative_and_garbage() -> None:
    sf = quota.parse(b"100S\n50 1\n-20 -1\ngarbage\n30 1\n")
    assert (sf.bytes, sf.messages, sf.lines) == (60, 1, 3)


# --- headers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"A: 1\nB: two\n words\n\nbody: no\n", [("a", "1"), ("b", "two words")]),
        (b"A: 1\r\nB: 2\r\n\r\nX: body\r\n", [("a", "1"), ("b", "2")]),
        (b"A: 1\nB: 2", [("a", "1"), ("b", "2")]),  # no separator, no final newline
        (b"just a body line\nA: 1\n", []),
        (b"A: \xff\xfe\nB: \x00\n\n", [("a", "\ufffd\ufffd"), ("b", "\x00")]),
        (b"Subject: =?utf-8?q?x?= \xc3\xa9\n\n", [("subject", "=?utf-8?q?x?= \u00e9")]),
    ],
)
def test_headers_parse(raw: bytes, expected: list[tuple[str, str]]) -> None:
    assert list(headers.parse(raw).fields) == expected


def test_huge_header_block_is_bounded() -> None:
    raw = b"X-Big: " + b"a" * (3 * headers.MAX_HEADER_BYTES) + b"\n\nbody\n"
    parsed = headers.parse(raw)
    assert len(parsed.fields) == 1


def test_addresses() -> None:
    found = headers.addresses(['"A, B" <Alice@Example.TEST>, bob@x.test', "Group: c@d.test;"])
    assert found == {"alice@example.test", "bob@x.test", "c@d.test"}
