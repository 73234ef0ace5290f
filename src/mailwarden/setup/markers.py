"""The ``# BEGIN mailwarden`` / ``# END mailwarden`` block in a file shared with people.

``with_block`` returns the text with the block's body replaced (or appended, after one
blank line, when there is none); every line outside the block stays byte for byte.
"""

from __future__ import annotations

from mailwarden.errors import ConfigError

BEGIN = "# BEGIN mailwarden (written by 'mailwarden setup'; edits inside are replaced)"
END = "# END mailwarden"


def _find(lines: list[str], path: str) -> tuple[int, int] | None:
    starts = [i for i, line in enumerate(lines) if line.startswith("# BEGIN mailwarden")]
    ends = [i for i, line in enumerate(lines) if line.rstrip() == END]
    if not starts and not ends:
        return None
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ConfigError(f"{path}: damaged '# BEGIN mailwarden' / '# END mailwarden' lines")
    return starts[0], ends[0]


def with_block(text: str, body: str, path: str = "file") -> str:
    lines = text.splitlines()
    block = [BEGIN, *body.rstrip("\n").splitlines(), END]
    span = _find(lines, path)
    if span is None:
        prefix = lines + ([""] if lines and lines[-1].strip() else [])
        return "\n".join(prefix + block) + "\n"
    start, end = span
    return "\n".join(lines[:start] + block + lines[end + 1 :]) + "\n"


def block_body(text: str, path: str = "file") -> str | None:
    lines = text.splitlines()
    span = _find(lines, path)
    if span is None:
        return None
    return "\n".join(lines[span[0] + 1 : span[1]])
