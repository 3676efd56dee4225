"""Callbacks that hold a MaskSet fixed while Lightning trains, and prune after a fit.

Thin by design: the maths lives in ``nmt_prune.saliency`` (scores), ``nmt_prune.allocation``
(scores -> masks) and ``nmt_prune.masks`` (enforcement, state, reports).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning.pytorch as pl
import torch

from nmt_prune import criteria
from nmt_prune.allocation import allocate, class_std, prunable_classes
from nmt_prune.masks import MaskSet
from nmt_prune.names import SPARSITY
from nmt_prune.schedules import han_dropout

log = logging.getLogger(__name__)

#: key of the masks in a checkpoint's ``callbacks`` dict (the same for every pruning callback, so
#: ``masks_from_checkpoint`` needs no knowledge of which one wrote it)
STATE_KEY = "nmt_prune.masks"


def masks_from_checkpoint(path: str) -> MaskSet | None:
    """The masks saved in a Lightning checkpoint, or None if it has none (a dense model)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("callbacks", {}).get(STATE_KEY)
    return MaskSet.from_state_dict(state["masks"]) if state and state.get("masks") else None


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


class PruneOnce(MaskedTraining):
    """Computes one mask with a saliency criterion and an allocation, then holds it fixed.

    ``method`` (criterion) x ``scheme`` (allocation) are orthogonal: any saliency with any
    allocation. The criterion's record (``nmt_prune.criteria``) scores; ``settings`` are its
    settings (defaults: the record's). Data-based criteria read the training data of the
    trainer's datamodule (or of the ``datamodule`` given to ``compute_masks``). After
    ``compute_masks``, ``saliency_s`` is the time spent scoring and
    ``data_used`` says on how much data.
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
        settings: dict | None = None,
    ) -> None:
        super().__init__(None)
        self.method, self.scheme, self.amount, self.seed = method, scheme, amount, seed
        self.include_biases, self.include_embeddings = include_biases, include_embeddings
        self.exclude = exclude
        self.criterion = criteria.get(method)
        self.settings = {**self.criterion.defaults, **(settings or {})}
        self.saliency_s = 0.0
        self.data_used: dict[str, Any] = {}
        #: weights the criterion moved (OBS's update), written by ``apply``
        self.new_weights: dict[str, torch.Tensor] = {}
        self._ctx: criteria.Context | None = None

    def _scores(self, model: torch.nn.Module, names: list[str], dm) -> dict[str, torch.Tensor]:
        self._ctx = criteria.Context(model, names, dm, self.seed, self.settings)
        scores, self.data_used = self.criterion.score(self._ctx)
        return scores

    def classes(self, model: torch.nn.Module) -> dict[str, list[str]]:
        """The class -> parameter names this pruner may prune (``allocation.prunable_classes``)."""
        shapes = {n: p.shape for n, p in model.named_parameters()}
        return prunable_classes(
            model.weight_classes(), shapes, self.include_biases, self.include_embeddings, self.exclude
        )

    def apply(self, model: torch.nn.Module) -> None:
        """Write the criterion's new weights (if it moved any), then zero the pruned ones."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, w in self.new_weights.items():
                params[n].copy_(w)
        self.masks.apply(model)

    def compute_masks(
        self,
        model: torch.nn.Module,
        datamodule=None,
        amount: float | None = None,
        prior: MaskSet | None = None,
        threshold: float | None = None,
    ) -> MaskSet:
        """Scores -> exact-count masks over the configured prunable parameters (weights untouched:
        a criterion that moves the kept weights, OBS, leaves them in ``new_weights`` for ``apply``).

        class-distribution's sigma_c: the standard deviation of the class's weights for
        ``magnitude`` (See et al.'s definition), of the class's scores for the other criteria.
        ``amount`` (default: the callback's), ``prior``: masks of an earlier event, whose pruned
        weights stay pruned (``allocation.allocate``). ``threshold``: prune every weight whose
        score is below it (below threshold x sigma_c for ``distribution``: See et al.'s lambda),
        plus the prior's, but never more than ``amount``.
        """
        amount = self.amount if amount is None else amount
        params = dict(model.named_parameters())
        classes = self.classes(model)
        names = [n for ns in classes.values() for n in ns]
        t0 = time.perf_counter()
        scores = self._scores(model, names, datamodule)
        self.saliency_s = time.perf_counter() - t0
        scale = None
        if self.scheme == "distribution":
            scale = class_std(params if self.criterion.scale == "weights" else scores, classes)
        prior_masks = prior.masks if prior is not None and len(prior) else None
        if threshold is not None:
            n_total = below = 0
            for cls, ns in classes.items():
                for n in ns:
                    hit = scores[n] / (scale[cls] if scale else 1.0) < threshold
                    if prior_masks is not None and n in prior_masks:
                        hit |= ~prior_masks[n].to(hit.device)
                    below, n_total = below + int(hit.sum()), n_total + hit.numel()
            amount = min(below, round(amount * n_total)) / n_total
        keep = allocate(scores, classes, amount, self.scheme, scale, prior_masks)
        if self.criterion.finish is not None:
            keep, self.new_weights = self.criterion.finish(self._ctx, keep)
        return MaskSet(keep)

    def prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.masks = self.compute_masks(pl_module.model, trainer.datamodule)
        self.apply(pl_module.model)
        rep = self.log_sparsity(trainer, pl_module)
        log.info("pruned %s/%s %.1f%%: sparsity %.4f (%d of %d prunable weights zero), scoring %.1f s",
                 self.method, self.scheme, 100 * self.amount, rep["sparsity"], self.masks.n_pruned(),
                 self.masks.n_masked(), self.saliency_s)  # fmt: skip


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
