"""A fit whose loss stops being a number fails the job instead of finishing "ok".

Without this, a learning rate that blows the weights up to inf/NaN trained on to the last epoch
and the job reported ``status: ok`` with ``val ppl nan`` and a test BLEU of noise (seen with
``optim=sgd optim.lr=1e38``). ``Divergence`` watches the training loss of every step and the
validation loss of every epoch, and raises ``Diverged`` at the first non-finite one, before a
checkpoint of the broken weights is written (Lightning runs checkpoint callbacks last):
results.json then says ``status: failed`` with the step, the value and the learning rate, the
last checkpoint holds the weights of the last good epoch, and a multirun goes on with its other jobs.

The step check keeps a flag on the device and reads it every ``every`` steps and at the end of
each epoch, so a GPU fit pays one host sync per ``every`` steps, not one per step. A loss that is
finite but huge (Adam at ``optim.lr=50`` gives val ppl 5e21) is a result, not a divergence.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch

from nmt_prune.names import TRAIN_LOSS
from nmt_prune.validate import Diverged

__all__ = ["Diverged", "Divergence"]


class Divergence(pl.Callback):
    def __init__(self, every: int = 50) -> None:
        self.every = every
        self._finite: torch.Tensor | None = None  # all losses since the last read were finite
        self._first_step = 0  # the first step since the last read

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        ok = torch.isfinite(loss.detach()).all()
        self._finite = ok if self._finite is None else self._finite & ok
        if (batch_idx + 1) % self.every == 0:
            self._read(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._read(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._read(trainer)
        loss = trainer.callback_metrics.get("val/loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise Diverged(
                f"training diverged: val loss {float(loss)} after epoch {trainer.current_epoch} "
                f"({_lr(trainer)}); {_advice(trainer)}"
            )

    def _read(self, trainer: pl.Trainer) -> None:
        finite, self._finite = self._finite, None
        first, self._first_step = self._first_step, trainer.global_step
        if finite is None or bool(finite):
            return
        last = trainer.callback_metrics.get(TRAIN_LOSS)
        value = f" (last logged {float(last)})" if last is not None else ""
        raise Diverged(
            f"training diverged: a non-finite training loss{value} in epoch {trainer.current_epoch}, "
            f"optimizer steps {first}-{trainer.global_step} ({_lr(trainer)}); {_advice(trainer)}"
        )


def _lr(trainer: pl.Trainer) -> str:
    return f"lr {trainer.optimizers[0].param_groups[0]['lr']:.3g}" if trainer.optimizers else "no optimizer"


def _advice(trainer: pl.Trainer) -> str:
    clip = trainer.gradient_clip_val
    kept = (
        "no epoch finished before it"
        if trainer.current_epoch == 0
        else "the last checkpoint is the last good epoch"
    )
    return f"a lower optim.lr, or gradient clipping (trainer.gradient_clip_val, now {clip}), may help; {kept}"
