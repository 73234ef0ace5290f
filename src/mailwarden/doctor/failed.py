"""``Failed``: what a doctor check raises when it fails; the message names the cause.

Who calls it: every check in ``doctor.checks`` and ``doctor.smarthost``; the runner
prints the message as the check's one line. Its own module so the checks need not import
each other.
"""


class Failed(Exception):
    """The check failed; the message names the cause."""
