"""Training until the validation perplexity stops improving, instead of for a fixed epoch count.

Two rules (``lr_schedule.name``), both capped by ``trainer.max_epochs``:

- ``converge``: the recipe of Luong et al. 2015 / See et al. 2016 and the seed repository. After
  ``patience`` epochs without a new best ``monitor`` value, go back to the best checkpoint (its
  weights and optimizer state), multiply the learning rate by ``factor`` and go on. When that
  plateau comes again after ``max_halvings`` halvings, training stops.
- ``early_stop``: plain early stopping: stop after ``patience`` epochs without a new best, LR
  unchanged.

The test then uses the best checkpoint (``ModelCheckpoint`` on the same ``monitor``). Epochs whose
``monitor`` is infinite (``val/ppl_at_target`` while a schedule has not reached its final
sparsity) are neither an improvement nor a plateau: the rule starts counting at the target.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning.pytorch as pl
import torch

from nmt_prune.module import CONVERGENCE_RULES as RULES
from nmt_prune.names import VAL_PPL

log = logging.getLogger(__name__)


class Convergence(pl.Callback):
    """Applies a convergence rule at the end of every training epoch that validated.

    ``stop_reason`` after the fit: ``converged`` (the plateau after ``max_halvings`` halvings),
    ``early_stopping`` (rule ``early_stop``) or None (the fit ended otherwise: max_epochs or an
    interruption; ``stop_record`` says which). ``events`` lists each halving: the epoch it came
    after, the epoch restored and the new LR.
    """

    def __init__(
        self,
        rule: str,
        monitor: str = VAL_PPL,
        patience: int = 1,
        factor: float = 0.5,
        max_halvings: int = 0,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"lr_schedule.name={rule!r}; valid choices: {', '.join(RULES)}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"lr_schedule.patience={patience!r}; must be an integer >= 1")
        if isinstance(max_halvings, bool) or not isinstance(max_halvings, int) or max_halvings < 0:
            raise ValueError(f"lr_schedule.max_halvings={max_halvings!r}; must be an integer >= 0")
        if not 0 < factor < 1:
            raise ValueError(f"lr_schedule.factor={factor!r}; must be in (0, 1)")
        self.rule, self.monitor, self.patience = rule, monitor, patience
        self.factor, self.max_halvings = factor, max_halvings
        self.best, self.best_epoch, self.bad_epochs, self.halvings = math.inf, None, 0, 0
        self.stop_reason: str | None = None
        self.events: list[dict[str, Any]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.sanity_checking:
            return  # no validation this epoch
        value = float(value)
        if value == math.inf:
            return  # a schedule has not reached its target sparsity yet
        epoch = trainer.current_epoch
        if value < self.best:  # NaN is never an improvement
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs < self.patience:
            return
        if self.rule == "early_stop" or self.halvings >= self.max_halvings:
            self.stop_reason = "early_stopping" if self.rule == "early_stop" else "converged"
            trainer.should_stop = True
            log.info(
                "%s after epoch %d: best %s %.4g at epoch %s",
                self.stop_reason,
                epoch,
                self.monitor,
                self.best,
                self.best_epoch,
            )
            return
        self._restore_best(trainer, pl_module)
        self.halvings, self.bad_epochs = self.halvings + 1, 0
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.events.append({"after_epoch": epoch, "restored_epoch": self.best_epoch, "lr": lr})
        log.info(
            "no better %s for %d epoch(s): back to epoch %s, lr -> %.4g (halving %d of %d)",
            self.monitor,
            self.patience,
            self.best_epoch,
            lr,
            self.halvings,
            self.max_halvings,
        )

    def _restore_best(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Weights and optimizer state of the best checkpoint; the LR of now x ``factor``."""
        path = trainer.checkpoint_callback.best_model_path
        if not path:
            raise RuntimeError(
                f"lr_schedule.name=converge needs the best checkpoint by {self.monitor}: none saved"
            )
        lrs = [[g["lr"] * self.factor for g in opt.param_groups] for opt in trainer.optimizers]
        ckpt = torch.load(path, map_location=pl_module.device, weights_only=True)
        pl_module.load_state_dict(ckpt["state_dict"])
        for opt, state, group_lrs in zip(trainer.optimizers, ckpt["optimizer_states"], lrs):
            opt.load_state_dict(state)
            for g, lr in zip(opt.param_groups, group_lrs):
                g["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        keys = ("best", "best_epoch", "bad_epochs", "halvings", "stop_reason", "events")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for k, v in state_dict.items():
            setattr(self, k, v)


def stop_record(trainer: pl.Trainer, epochs_run: int, rule: Convergence | None) -> dict[str, Any]:
    """Why and after how many epochs a fit ended (results.json ``training``)."""
    if trainer.interrupted:
        reason = "interrupted"
    elif rule is not None and rule.stop_reason:
        reason = rule.stop_reason
    else:
        reason = "max_epochs"
    rec: dict[str, Any] = {"epochs": epochs_run, "max_epochs": trainer.max_epochs, "stop_reason": reason}
    if rule is not None:
        rec.update(rule=rule.rule, best_epoch=rule.best_epoch, halvings=rule.halvings, events=rule.events)
    return rec
