"""Callbacks that hold a MaskSet fixed while Lightning trains, and prune after a fit.

Thin by design: the maths lives in ``nmt_prune.saliency`` (scores), ``nmt_prune.allocation``
(scores -> masks) and ``nmt_prune.masks`` (enforcement, state, reports).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch

from nmt_prune import saliency
from nmt_prune.allocation import allocate, class_std, prunable_classes
from nmt_prune.masks import MaskSet

log = logging.getLogger(__name__)

#: key of the masks in a checkpoint's ``callbacks`` dict (the same for every pruning callback, so
#: ``masks_from_checkpoint`` needs no knowledge of which one wrote it)
STATE_KEY = "nmt_prune.masks"


def masks_from_checkpoint(path: str) -> MaskSet | None:
    """The masks saved in a Lightning checkpoint, or None if it has none (a dense model)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("callbacks", {}).get(STATE_KEY)
    return MaskSet.from_state_dict(state["masks"]) if state and state.get("masks") else None


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
        metrics = {"prune/sparsity": rep["sparsity"], "prune/sparsity_no_embed": rep["sparsity_no_embed"]}
        metrics.update({f"prune/sparsity/{c}": v for c, v in rep["sparsity_by_class"].items()})
        for lg in trainer.loggers:
            lg.log_metrics(metrics, step=trainer.global_step)
        return rep


class PruneAfterFit(MaskedTraining):
    """See, Luong & Manning 2016: prune a trained model once, then retrain with the mask fixed.

    The masks are computed in ``setup`` (of whichever stage runs first: validate, test or fit)
    from the module's current weights, which must be the trained dense ones, unless masks are
    already there (restored from a checkpoint or given). ``criterion`` x ``scheme`` are
    orthogonal: any saliency with any allocation.
    """

    def __init__(
        self,
        method: str,
        scheme: str,
        amount: float,
        include_biases: bool = False,
        include_embeddings: bool = True,
        exclude: tuple[str, ...] = (),
        seed: int = 0,
    ) -> None:
        super().__init__(None)
        self.method, self.scheme, self.amount, self.seed = method, scheme, amount, seed
        self.include_biases, self.include_embeddings = include_biases, include_embeddings
        self.exclude = exclude

    def compute_masks(self, model: torch.nn.Module) -> MaskSet:
        """Scores -> exact-count masks over the configured prunable parameters (no side effects)."""
        params = dict(model.named_parameters())
        classes = prunable_classes(
            model.weight_classes(), {n: p.shape for n, p in params.items()},
            self.include_biases, self.include_embeddings, self.exclude,
        )  # fmt: skip
        names = [n for ns in classes.values() for n in ns]
        scores = saliency.scores(self.method, {n: params[n] for n in names}, seed=self.seed)
        scale = class_std(params, classes) if self.scheme == "distribution" else None
        return MaskSet(allocate(scores, classes, self.amount, self.scheme, scale))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.masks is None:
            self.masks = self.compute_masks(pl_module.model)
            self.masks.apply(pl_module.model)
            rep = self.log_sparsity(trainer, pl_module)
            log.info("pruned %s/%s %.1f%%: sparsity %.4f (%d of %d prunable weights zero)",
                     self.method, self.scheme, 100 * self.amount, rep["sparsity"],
                     self.masks.n_pruned(), self.masks.n_masked())  # fmt: skip
