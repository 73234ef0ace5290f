"""Run the checks in order, each bounded by the timeout; print; clean up."""

from __future__ import annotations

import concurrent.futures
from typing import TextIO

from mailwarden.doctor.checks import CHECKS, Check, Failed, Probe, clamd_note, cleanup
from mailwarden.errors import MailwardenError


def _one(pool: concurrent.futures.ThreadPoolExecutor, check: Check, p: Probe) -> str:
    future = pool.submit(check, p)
    try:
        return future.result(timeout=p.opts.timeout)
    except concurrent.futures.TimeoutError:
        raise Failed(f"no result within {p.opts.timeout:g}s") from None


def run(p: Probe, out: TextIO) -> int:
    passed = failed = 0
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="doctor")
    try:
        for title, check in CHECKS:
            try:
                detail = _one(pool, check, p)
            except (Failed, MailwardenError, OSError) as exc:
                failed += 1
                out.write(f"FAIL  {title}: {exc}\n")
            except Exception as exc:  # noqa: BLE001 - a doctor reports, it does not crash
                failed += 1
                out.write(f"FAIL  {title}: {type(exc).__name__}: {exc}\n")
            else:
                passed += 1
                out.write(f"ok    {title}: {detail}\n")
            out.flush()
    finally:
        cleanup(p)
        pool.shutdown(wait=False, cancel_futures=True)
    clamd_note(p)
    for note in p.notes:
        out.write(f"note: {note}\n")
    out.write(f"{passed} passed, {failed} failed\n")
    return 1 if failed else 0
