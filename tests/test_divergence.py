"""A fit whose loss becomes inf/NaN fails the job (callbacks/divergence.py) instead of training on
and reporting ``status: ok`` with ``val ppl nan`` (what it did before)."""

from __future__ import annotations

import json
import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from callbacks.divergence import Diverged, Divergence
from tests.conftest import TINY, quiet_trainer, tiny_module
from tests.test_run import _cli


class PoisonAt(pl.Callback):
    """Writes NaN into one weight after optimizer step ``step`` (a blown-up update)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


def _fit(toy_dm, tmp_path, *callbacks, epochs=2):
    module = tiny_module(toy_dm)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    trainer = quiet_trainer(
        max_epochs=epochs, limit_train_batches=6, enable_checkpointing=True, callbacks=[ckpt, *callbacks]
    )
    trainer.fit(module, datamodule=toy_dm)
    return trainer


def test_a_clean_fit_is_left_alone(toy_dm, tmp_path):
    trainer = _fit(toy_dm, tmp_path, Divergence(every=1))
    assert trainer.current_epoch == 2 and not trainer.interrupted


def test_a_nan_loss_stops_the_fit_within_every_steps(toy_dm, tmp_path):
    with pytest.raises(Diverged, match=r"non-finite training loss .* in epoch 0, optimizer steps 2-4 "):
        _fit(toy_dm, tmp_path, Divergence(every=2), PoisonAt(3))  # NaN loss from step 4's forward


def test_the_diverged_epoch_is_never_checkpointed(toy_dm, tmp_path):
    """NaN in epoch 1 (steps 7-12), found at its end (every=100): last.ckpt stays epoch 0's,
    finite: Lightning runs checkpoint callbacks after the others."""
    with pytest.raises(Diverged, match="the last checkpoint is the last good epoch"):
        _fit(toy_dm, tmp_path, Divergence(every=100), PoisonAt(8))
    last = torch.load(tmp_path / "ck" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_a_diverging_run_fails_with_one_line(tmp_path):
    """SGD at lr 1e38 (clipped gradients, still inf weights): exit 1, one line naming the LR,
    results.json ``failed`` with the same message; it used to say ok, val ppl nan."""
    args = [a for a in TINY if not a.startswith(("model=", "threads="))]  # _cli sets those
    p = _cli(tmp_path, *args, "optim=sgd", "optim.lr=1e38")
    assert p.returncode == 1, p.stderr[-2000:]
    assert "error: training diverged: a non-finite training loss" in p.stderr and "lr 1e+38" in p.stderr
    assert "Traceback" not in p.stderr
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["status"] == "failed" and res["error"].startswith("Diverged: training diverged")
    assert not math.isnan(res.get("val_ppl") or 0.0)  # no NaN figure reported


def test_nan_weights_are_never_evaluated_as_a_result(toy_dm):
    """The last guard (training.evaluate), for a job that trains nothing (pruning without
    retraining): NaN outputs raise instead of becoming results.json figures."""
    from nmt_prune.training import evaluate

    module = tiny_module(toy_dm)
    module.hparams.eval["beam_size"] = 0  # perplexities only: nothing decoded
    with torch.no_grad():
        module.model.generator.weight.fill_(float("nan"))  # W_s: every logit NaN
    with pytest.raises(Diverged, match=r"outputs are not numbers: \{'val/ppl': nan, 'test/ppl': nan\}"):
        evaluate(quiet_trainer(limit_val_batches=1.0, limit_test_batches=2), module, toy_dm, None)
