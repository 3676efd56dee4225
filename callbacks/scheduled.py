"""Pruning by a schedule while Lightning trains (iterative, gradual, linear; after fit or from scratch)."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning.pytorch as pl
import torch

from callbacks.masking import PruneOnce, han_dropout_rates
from nmt_prune.masks import MaskSet
from nmt_prune.schedules import Schedule

log = logging.getLogger(__name__)


class ScheduledPruning(PruneOnce):
    """Prunes at the steps of a schedule (``nmt_prune.schedules``) while Lightning trains.

    At each pruning event (before the optimizer step numbered by the event) the masks are
    recomputed from the model's current weights with the criterion and the allocation, to the
    schedule's cumulative target. The pruned set only grows (``allocate(prior=...)``) unless
    ``regrow`` (magnitude only): then a pruned weight keeps, out of the network, the value it had
    when it was pruned, is ranked by it at the next event like any other weight, and comes back
    with that value if it ranks above the cut (the semantics of TensorFlow's model_pruning, Zhu &
    Gupta's implementation, where a masked weight gets no gradient). ``threshold``: each event prunes the
    weights below a fixed magnitude threshold instead (capped at the final sparsity).
    ``dropout_adjust``: after each event every dropout site gets Han et al.'s
    D_r = D_o sqrt(C_r / C_o) (C: connections of the matrix it feeds, ``Seq2Seq.dropout_sites``).

    ``events`` records every event: step, epoch, target, realised sparsity, seconds. The module's
    ``at_target`` flag turns True after the last event (checkpoints are chosen among epochs at
    the final sparsity only).
    """

    def __init__(
        self,
        schedule: Schedule,
        *args: Any,
        regrow: bool = False,
        dropout_adjust: bool = False,
        threshold: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.schedule, self.regrow, self.threshold = schedule, regrow, threshold
        self.dropout_adjust = dropout_adjust
        self.masks = MaskSet({})
        self.last_step = -1
        self.events: list[dict[str, Any]] = []
        self.base_dropout: dict[str, float] | None = None
        self.frozen: dict[str, torch.Tensor] = {}  # regrow: the values of pruned weights
        self.prune_s = 0.0

    def done(self) -> bool:
        return self.last_step >= self.schedule.events[-1]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        pl_module.at_target = self.done()
        if self.base_dropout is not None:  # resumed: the rates of the last event
            self._adjust_dropout(pl_module.model)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        if any(self.last_step < t <= step for t in self.schedule.events):
            self.prune_event(trainer, pl_module, step)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_end(trainer, pl_module)
        if not self.done():  # never a model below its target reported as ok
            reached = self.events[-1]["sparsity"] if self.events else 0.0
            raise RuntimeError(
                f"the pruning schedule did not finish: its last event is at optimizer step "
                f"{self.schedule.events[-1]}, the fit stopped after {trainer.global_step} steps at "
                f"sparsity {reached:.4f} (target {self.schedule.final:.4f}); give the fit more epochs "
                f"or end the schedule earlier"
            )

    def prune_event(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        t0 = time.perf_counter()
        model = pl_module.model
        # threshold rounds prune what is below the threshold, capped at the final sparsity
        target = self.schedule.final if self.threshold is not None else self.schedule(step)
        if self.regrow:
            params = dict(model.named_parameters())
            with torch.no_grad():  # pruned weights compete with the values they were pruned at
                for n, m in self.masks.masks.items():
                    params[n][~m] = self.frozen[n][~m].to(params[n].device)
            new = self.compute_masks(model, trainer.datamodule, target, None, self.threshold)
            self.frozen = {n: params[n].detach().clone() for n in new.masks}
        else:
            new = self.compute_masks(model, trainer.datamodule, target, self.masks, self.threshold)
        self.masks.masks = new.masks  # in place: the optimizer hooks hold this MaskSet
        self.masks.apply(model)
        if self.dropout_adjust:
            if self.base_dropout is None:
                self.base_dropout = dict(model.dropout_p)
            self._adjust_dropout(model)
        self.last_step = step
        pl_module.at_target = self.done()
        rep = self.log_sparsity(trainer, pl_module)
        seconds = time.perf_counter() - t0
        self.prune_s += seconds
        event = {
            "step": step,
            "epoch": trainer.current_epoch,
            "target": target,
            "sparsity": rep["sparsity"],
            "n_pruned": self.masks.n_pruned(),
            "saliency_s": self.saliency_s,
            "seconds": seconds,
        }
        if self.dropout_adjust:
            event["dropout"] = dict(model.dropout_p)
        self.events.append(event)
        log.info(
            "step %d (epoch %d): pruned %s/%s to %.4f (target %.4f), %.1f s",
            step,
            trainer.current_epoch,
            self.method,
            self.scheme,
            rep["sparsity"],
            target,
            seconds,
        )

    def _adjust_dropout(self, model: torch.nn.Module) -> None:
        model.set_dropout(han_dropout_rates(model, self.masks, self.base_dropout))

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "last_step": self.last_step,
            "events": self.events,
            "base_dropout": self.base_dropout,
            "frozen": self.frozen,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.last_step = state_dict.get("last_step", -1)
        self.events = list(state_dict.get("events", []))
        self.base_dropout = state_dict.get("base_dropout")
        self.frozen = dict(state_dict.get("frozen", {}))
