"""The dense cache's file lock: a job that needs an entry another job is training waits for it,
says so (and again every ``report_s``), lends its threads to that training meanwhile
(nmt_prune/lending.py), and gives up after ``timeout_h`` hours with a message that says what to do."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from filelock import FileLock, Timeout

from nmt_prune import lending

log = logging.getLogger("nmt_prune.baseline")  # its messages are the dense baseline's

#: how long a job waits for another job's dense training before it gives up
LOCK_TIMEOUT_H = 48.0
#: how often a waiting job says it is still waiting
LOCK_REPORT_S = 600.0


@contextlib.contextmanager
def waiting_lock(
    path: Path,
    key: str,
    timeout_h: float = LOCK_TIMEOUT_H,
    report_s: float = LOCK_REPORT_S,
    lend: bool = True,
):
    """The cache entry's file lock; a job that has to wait for it says so, says again every
    ``report_s`` that it is still waiting, and gives up after ``timeout_h`` hours. ``lend``: its
    threads help the job that trains the entry while it waits (nmt_prune/lending.py)."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=min(5.0, report_s))
    except Timeout:
        log.info("dense baseline %s: another job is training it; waiting for it (lock %s)", key, path)
        with lending.waiting(path.with_suffix(".waiting")) if lend else contextlib.nullcontext():
            _wait(lock, path, key, timeout_h, report_s)
    try:
        yield
    finally:
        lock.release()


def _wait(lock: FileLock, path: Path, key: str, timeout_h: float, report_s: float) -> None:
    waited, deadline = 0.0, timeout_h * 3600
    while True:
        try:
            lock.acquire(timeout=min(report_s, max(deadline - waited, 0.001)))
            return
        except Timeout:
            waited += report_s
            if waited >= deadline:
                raise TimeoutError(
                    f"waited {timeout_h:g} h for the dense baseline {key} that another "
                    f"job trains (lock {path}); if no job is training it, delete the "
                    f"lock file and run again"
                ) from None
            log.info("dense baseline %s: still waiting for its training (%.0f min)", key, waited / 60)
