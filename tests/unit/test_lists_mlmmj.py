"""mailwarden.lists.mlmmj: the control files, the loop rule, the subscriber files.

The subscriber-file tests write into a temporary directory (no chown: ``Spool.ids`` is
None); what real mlmmj makes of the files is tests/integration/test_lists_mlmmj.py's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailwarden.config import ListsSettings
from mailwarden.errors import UsageError
from mailwarden.lists import mlmmj


def _spec(**kw: object) -> mlmmj.ListSpec:
    base: dict[str, object] = {"address": "team@example.test", "owners": ("boss@example.test",)}
    base.update(kw)
    return mlmmj.ListSpec(**base)  # type: ignore[arg-type]


def test_control_files_of_a_members_only_list() -> None:
    files = mlmmj.control_files(_spec(relay_host="127.0.0.1", relay_port=2525))
    assert files["listaddress"] == "team@example.test\n"
    assert files["owner"] == "boss@example.test\n"
    assert files["moderators"] == "boss@example.test\n"  # no flagged member: the owners
    assert files["moderated"] is None
    assert files["subonlypost"] == ""
    assert files["tocc"] == ""
    assert files["relayhost"] == "127.0.0.1\n"
    assert files["smtpport"] == "2525\n"
    assert "X-Loop:\n" in (files["delheaders"] or "") + "X-Loop:\n"  # never deleted
    assert "X-Loop:" not in (files["delheaders"] or "")


@pytest.mark.parametrize(
    ("moderated", "subscribers_only", "present", "absent"),
    [
        (True, True, {"moderated", "subonlypost"}, set()),
        (True, False, {"moderated"}, {"subonlypost"}),
        (False, False, set(), {"moderated", "subonlypost"}),
    ],
)
def test_boolean_tunables_exist_only_when_on(
    moderated: bool, subscribers_only: bool, present: set[str], absent: set[str]
) -> None:
    files = mlmmj.control_files(_spec(moderated=moderated, subscribers_only=subscribers_only))
    assert {name for name in present if files[name] is not None} == present
    assert {name for name in absent if files[name] is None} == absent


def test_flagged_moderators_replace_the_owners() -> None:
    files = mlmmj.control_files(_spec(moderators=("m1@example.test", "m2@example.test")))
    assert files["moderators"] == "m1@example.test\nm2@example.test\n"


def test_list_headers() -> None:
    assert mlmmj.custom_headers("team@example.test") == [
        "List-Id: <team.example.test>",
        "List-Post: <mailto:team@example.test>",
        "List-Help: <mailto:team+help@example.test>",
        "List-Subscribe: <mailto:team+subscribe@example.test>",
        "List-Unsubscribe: <mailto:team+unsubscribe@example.test>",
        "X-Loop: team@example.test",
    ]


@pytest.mark.parametrize(
    ("header", "discarded"),
    [
        ("X-Loop: loop-a@example.test", True),
        ("x-loop: LOOP-A@EXAMPLE.TEST", True),  # mlmmj matches case-insensitively
        ("X-Loop: loop-a@exampleXtest", False),  # the dot is literal
        ("X-Loop: loop-a@example.test.evil", False),
        ("X-Loop: other@example.test", False),
        ("Subject: X-Loop: loop-a@example.test", False),
    ],
)
def test_the_loop_rule_matches_only_this_lists_x_loop(header: str, discarded: bool) -> None:
    rule, allow = mlmmj.access_rules("loop-a@example.test")
    assert allow == "allow"
    action, _, pattern = rule.partition(" ")
    assert action == "discard"
    # Python's re agrees with POSIX ERE on this subset (anchors, ' *', escaped dots).
    assert bool(re.search(pattern, header, re.IGNORECASE)) is discarded


def test_ere_escape() -> None:
    assert mlmmj.ere_escape("a.b+c@d") == "a\\.b\\+c@d"
    assert mlmmj.ere_escape("loop-a") == "loop-a"  # '-' is not special outside brackets


@pytest.mark.parametrize(
    ("local", "ok"),
    [
        ("team", True),
        ("loop-a", True),
        ("a.b_c", True),
        ("a+b", False),
        ("../x", False),
        ("", False),
        ("-x", False),
    ],
)
def test_list_names(local: str, ok: bool) -> None:
    assert (mlmmj.local_part_problem(local) is None) is ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:25", ("127.0.0.1", 25)),
        ("[::1]:2525", ("::1", 2525)),
        ("mx.example.test:587", ("mx.example.test", 587)),
    ],
)
def test_smtp_setting(text: str, expected: tuple[str, int]) -> None:
    assert mlmmj.split_host_port(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "host:0", "host:x", "host:70000"])
def test_bad_smtp_setting(text: str) -> None:
    with pytest.raises(UsageError, match=r"\[lists\] smtp"):
        mlmmj.split_host_port(text)


@pytest.fixture
def spool(tmp_path: Path) -> mlmmj.Spool:
    spool = mlmmj.Spool(tmp_path / "mlmmj")
    mlmmj.create(spool, _spec())
    return spool


def test_create_lays_the_list_out_like_mlmmj_make_ml(spool: mlmmj.Spool) -> None:
    listdir = spool.list_dir("team@example.test")
    assert listdir == spool.root / "example.test" / "team"
    for sub in mlmmj.SUBDIRS:
        assert (listdir / sub).is_dir(), sub
    assert (listdir / "index").is_file()
    assert (listdir / "control" / "listaddress").read_text() == "team@example.test\n"
    assert not (listdir / "control" / "moderated").exists()
    mlmmj.write_control(spool, _spec(moderated=True))
    assert (listdir / "control" / "moderated").exists()
    mlmmj.write_control(spool, _spec(moderated=False))
    assert not (listdir / "control" / "moderated").exists()


def test_members_move_between_modes_and_leave(spool: mlmmj.Spool) -> None:
    ml = "team@example.test"
    mlmmj.add_member(spool, ml, "alice@example.test", "normal")
    mlmmj.add_member(spool, ml, "amy@example.test", "normal")
    mlmmj.add_member(spool, ml, "alice@example.test", "normal")  # twice: once in the file
    assert (spool.list_dir(ml) / "subscribers.d" / "a").read_text() == (
        "alice@example.test\namy@example.test\n"
    )
    mlmmj.add_member(spool, ml, "alice@example.test", "digest")
    assert mlmmj.read_members(spool, ml) == {
        "alice@example.test": "digest",
        "amy@example.test": "normal",
    }
    assert mlmmj.remove_member(spool, ml, "alice@example.test") is True
    assert mlmmj.remove_member(spool, ml, "alice@example.test") is False
    assert mlmmj.read_members(spool, ml) == {"amy@example.test": "normal"}


def test_a_line_mlmmj_wrote_is_read_back(spool: mlmmj.Spool) -> None:
    (spool.list_dir("team@example.test") / "nomailsubs.d" / "d").write_text("Dave@Example.Test\n")
    assert mlmmj.read_members(spool, "team@example.test") == {"dave@example.test": "nomail"}


def test_remove_keeps_the_directory_aside(spool: mlmmj.Spool) -> None:
    moved = mlmmj.remove(spool, "team@example.test")
    assert moved is not None and (moved / "control" / "listaddress").is_file()
    assert moved.parent == spool.root.with_name("mlmmj.removed") / "example.test"
    assert not spool.list_dir("team@example.test").exists()
    assert mlmmj.remove(spool, "team@example.test") is None


def test_spool_from_settings_checks_the_smtp_setting() -> None:
    spool = mlmmj.Spool.from_settings(ListsSettings(spool="/x", user="root", smtp="[::1]:26"))
    assert (spool.root, spool.relay_host, spool.relay_port) == (Path("/x"), "::1", 26)
