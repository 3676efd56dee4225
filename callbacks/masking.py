"""Callbacks that hold a MaskSet fixed while Lightning trains, and prune after a fit.

Thin by design: the maths lives in ``nmt_prune.saliency`` (scores), ``nmt_prune.allocation``
(scores -> masks) and ``nmt_prune.masks`` (enforcement, state, reports).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch

from nmt_prune.masks import STATE_KEY, MaskSet, masks_from_checkpoint  # noqa: F401  (re-exported)
from nmt_prune.names import SPARSITY
from nmt_prune.pruner import Pruner
from nmt_prune.schedules import han_dropout

log = logging.getLogger(__name__)


def han_dropout_rates(model: torch.nn.Module, masks: MaskSet, base: dict[str, float]) -> dict[str, float]:
    """Han et al. 2015 eq. 2 at every dropout site (``Seq2Seq.dropout_sites``): D_r = D_o
    sqrt(C_r / C_o), C = the connections of the matrix columns the site drops (C_r: kept)."""
    params = dict(model.named_parameters())
    rates = {}
    for site, (name, cols) in model.dropout_sites().items():
        n = params[name][:, cols].numel()
        m = masks.masks.get(name)
        rates[site] = han_dropout(base[site], n, int(m[:, cols].sum()) if m is not None else n)
    return rates


class MaskedTraining(pl.Callback):
    """Keeps pruned weights at exactly zero through every optimizer step of a fit.

    Gradients of pruned weights are zeroed in ``on_before_optimizer_step`` (before gradient
    clipping, so clipping sees the pruned network's gradient) and the weights are re-zeroed by an
    optimizer step post-hook (after momentum, Adam moments or weight decay moved them). The
    masks are saved in, and restored from, the checkpoint's callback state.
    """

    def __init__(self, masks: MaskSet | None = None) -> None:
        self.masks = masks
        self._handles: list[Any] = []

    @property
    def state_key(self) -> str:
        return STATE_KEY

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.masks is None:
            return
        self.masks.apply(pl_module.model)
        for opt in trainer.optimizers:
            self._handles.append(self.masks.attach(pl_module.model, opt))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.masks is not None:
            self.masks.mask_grads(pl_module.model)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def state_dict(self) -> dict[str, Any]:
        return {"masks": self.masks.state_dict() if self.masks is not None else {}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("masks"):
            self.masks = MaskSet.from_state_dict(state_dict["masks"])

    def log_sparsity(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        """Report the model's sparsity; send ``prune/sparsity[/<class>]`` to every logger."""
        model = pl_module.model
        rep = self.masks.report(model, model.weight_classes())
        metrics = {SPARSITY: rep["sparsity"], f"{SPARSITY}_no_embed": rep["sparsity_no_embed"]}
        metrics.update({f"{SPARSITY}/{c}": v for c, v in rep["sparsity_by_class"].items()})
        for lg in trainer.loggers:
            lg.log_metrics(metrics, step=trainer.global_step)
        return rep


class PruneOnce(MaskedTraining, Pruner):
    """Computes one mask (``nmt_prune.pruner.Pruner``: criterion x allocation) when its timing
    comes, then holds it fixed (``MaskedTraining``). Data-based criteria read the trainer's
    datamodule."""

    def __init__(self, method: str, scheme: str, amount: float, **kwargs: Any) -> None:
        MaskedTraining.__init__(self, None)
        Pruner.__init__(self, method, scheme, amount, **kwargs)

    def prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.masks = self.compute_masks(pl_module.model, trainer.datamodule)
        self.apply(pl_module.model, self.masks)
        rep = self.log_sparsity(trainer, pl_module)
        log.info(
            "pruned %s/%s %.1f%%: sparsity %.4f (%d of %d prunable weights zero), scoring %.1f s",
            self.method,
            self.scheme,
            100 * self.amount,
            rep["sparsity"],
            self.masks.n_pruned(),
            self.masks.n_masked(),
            self.saliency_s,
        )


class PruneAfterFit(PruneOnce):
    """See, Luong & Manning 2016: prune a trained model once, then retrain with the mask fixed.

    The masks are computed in ``setup`` (of whichever stage runs first: validate, test or fit)
    from the module's current weights, which must be the trained dense ones, unless masks are
    already there (restored from a checkpoint or given).
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.masks is None:
            self.prune(trainer, pl_module)


class PruneAtInit(PruneOnce):
    """Prune before training: SNIP (Lee, Ajanthan & Torr 2019), or random / magnitude at init.

    The masks are computed in ``on_fit_start``, on the initial weights, before any optimizer step
    (and not again when a fit resumes from a checkpoint that holds them); training then runs from
    those same initial weights with the masks held fixed.
    """

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.masks is None:
            self.prune(trainer, pl_module)
        super().on_fit_start(trainer, pl_module)
