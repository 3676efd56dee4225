"""Waiting jobs lend their threads to the job that trains the dense baseline they wait for
(nmt_prune/lending.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import lightning.pytorch as pl
import pytest
import torch

from nmt_prune import lending
from tests.conftest import quiet_trainer, tiny_module


@pytest.fixture
def live_pid():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield p.pid
    p.kill()
    p.wait()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lent_counts_live_waiters_only(tmp_path, live_pid):
    d = tmp_path / "k.waiting"
    assert lending.lent(d) == 0  # nobody waits yet: no directory
    with lending.waiting(d):  # this process's own marker does not lend to itself
        assert (d / f"{os.getpid()}.{torch.get_num_threads()}").is_file()
        assert lending.lent(d) == 0
    assert not list(d.iterdir())  # the marker goes when the wait ends
    (d / f"{live_pid}.3").touch()
    (d / f"{_dead_pid()}.5").touch()  # a waiter killed while waiting
    (d / "not-a-marker").touch()
    assert lending.lent(d) == 3
    assert sorted(p.name for p in d.iterdir()) == sorted([f"{live_pid}.3", "not-a-marker"])


def test_a_training_borrows_the_waiters_threads_and_gives_them_back(tmp_path, toy_dm, live_pid):
    module = tiny_module(toy_dm)
    d = tmp_path / "k.waiting"
    d.mkdir()
    seen = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(torch.get_num_threads())
            if trainer.current_epoch == 0 and batch_idx == 1:
                (d / f"{live_pid}.2").touch()  # a job starts waiting during epoch 0

    own = torch.get_num_threads()
    with lending.borrowing(d):
        borrow = lending.borrower()
    assert borrow is not None and lending.borrower() is None  # only inside borrowing()
    borrow.cores = own + 2  # as if the machine had the cores for it
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=4, callbacks=[borrow, Probe()])
    trainer.fit(module, datamodule=toy_dm)
    assert seen[:4] == [own] * 4 and seen[4:] == [own + 2] * 4  # re-counted at the next epoch
    assert borrow.used == [own, own + 2] and torch.get_num_threads() == own  # given back
    borrow.cores = own + 1  # never more threads than cores
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, callbacks=[borrow])
    trainer.fit(module, datamodule=toy_dm)
    assert borrow.used[-1] == own + 1 and torch.get_num_threads() == own


@pytest.mark.parametrize("lend", [True, False])
def test_the_dense_baseline_trains_borrowing_unless_lend_threads_is_false(tmp_path, lend):
    from nmt_prune import baseline
    from tests.conftest import make_cfg

    cfg = make_cfg(tmp_path, f"lend_threads={str(lend).lower()}")
    seen = []

    def train(out, resume=None):
        seen.append(lending.borrower())  # what make_trainer would add to the dense fit
        (out / "checkpoints").mkdir(exist_ok=True)
        (out / "checkpoints" / "best.ckpt").write_bytes(b"weights")
        (out / "theta0.pt").write_bytes(b"init")
        return {"status": "ok", "checkpoint": str(out / "checkpoints" / "best.ckpt")}

    baseline.obtain(cfg, train)
    assert (seen[0] is not None) == lend and lending.borrower() is None
    if lend:
        assert seen[0].waiting_dir == tmp_path / "cache" / "dense" / f"{baseline.cache_key(cfg)}.waiting"
