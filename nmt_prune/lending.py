"""Jobs that wait for a dense baseline lend their threads to the job that trains it.

In a parallel sweep (``hydra/launcher=joblib``) every job gets ``cores / n_jobs`` threads
(``runtime.effective_threads``). The jobs of a grid share one dense baseline, which the first of
them trains under the cache lock (``baseline.obtain``) while the others wait on that lock with
their cores idle. So a waiting job says it waits, and with how many threads: a marker file
``<pid>.<threads>`` in the entry's ``<key>.waiting/`` directory, for as long as it waits
(``waiting``). The job that trains the baseline (``borrowing`` around its training) runs it with
its own threads plus those lent, at most the machine's cores, re-counted at every epoch and every
``every`` batches (``BorrowThreads``, added by ``training.make_trainer``): a waiter that gives up
or is killed stops counting at the next re-count (a marker whose process is gone is removed).

Only a waiter for the same baseline lends: jobs waiting for another key lend to that one's
trainer, and jobs that are busy training their own models lend nothing. Thread counts change
how fast a job runs, not what it computes beyond float summation order (``threads`` is not part
of the cache key or of the config a resumed job compares).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import torch

log = logging.getLogger(__name__)

#: the waiting directory of the baseline this process is training now (None: not training one)
_BORROWING: contextvars.ContextVar[Path | None] = contextvars.ContextVar("borrowing", default=None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def lent(waiting_dir: Path) -> int:
    """Threads lent by the live waiters in ``waiting_dir`` (stale markers removed)."""
    total = 0
    if not waiting_dir.is_dir():
        return 0
    for marker in waiting_dir.iterdir():
        try:
            pid, threads = (int(x) for x in marker.name.split("."))
        except ValueError:
            continue
        if pid != os.getpid() and _alive(pid):
            total += threads
        elif pid != os.getpid():
            marker.unlink(missing_ok=True)
    return total


@contextlib.contextmanager
def waiting(waiting_dir: Path) -> Iterator[None]:
    """While this job waits for the baseline: a marker lending its threads to the trainer."""
    waiting_dir.mkdir(parents=True, exist_ok=True)
    marker = waiting_dir / f"{os.getpid()}.{torch.get_num_threads()}"
    marker.touch()
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


@contextlib.contextmanager
def borrowing(waiting_dir: Path) -> Iterator[None]:
    """While this job trains the baseline: its trainers borrow the waiters' threads."""
    token = _BORROWING.set(waiting_dir)
    try:
        yield
    finally:
        _BORROWING.reset(token)


def borrower() -> BorrowThreads | None:
    """The callback for a trainer built now: one while ``borrowing``, else None."""
    d = _BORROWING.get()
    return BorrowThreads(d) if d is not None else None


class BorrowThreads(pl.Callback):
    """Runs the fit with its own threads plus the waiters', re-counted every epoch and every
    ``every`` batches; puts its own count back when the fit ends."""

    def __init__(self, waiting_dir: Path, every: int = 50, cores: int | None = None) -> None:
        self.waiting_dir, self.every = Path(waiting_dir), every
        self.cores = cores or os.cpu_count() or 1
        self.own: int | None = None
        self.used: list[int] = []  # the thread counts set, in order (results and tests read it)

    def _recount(self) -> None:
        n = min(self.cores, self.own + lent(self.waiting_dir))
        if n != torch.get_num_threads():
            log.info("dense baseline: %d threads (%d own, the rest lent by waiting jobs)", n, self.own)
            torch.set_num_threads(n)
        if not self.used or self.used[-1] != n:
            self.used.append(n)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.own = torch.get_num_threads()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._recount()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx and batch_idx % self.every == 0:
            self._recount()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.own is not None:
            torch.set_num_threads(self.own)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.on_fit_end(trainer, pl_module)
