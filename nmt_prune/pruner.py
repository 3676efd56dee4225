"""The pruner: a criterion (``nmt_prune.criteria``) and an allocation (``nmt_prune.allocation``)
turned into exact-count masks (``nmt_prune.masks.MaskSet``) on a model. Plain Python: the pruning
callbacks (``callbacks/``) inherit it and only decide when it runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from nmt_prune import criteria
from nmt_prune.allocation import allocate, class_std, prunable_classes
from nmt_prune.masks import MaskSet


class Pruner:
    """Criterion x allocation -> exact-count masks on a model (and data): the *what* of pruning,
    without Lightning (the callbacks in ``callbacks/`` say *when*; tests and benchmarks use this).

    ``method`` (criterion) x ``scheme`` (allocation) are orthogonal: any saliency with any
    allocation. The criterion's record (``nmt_prune.criteria``) scores; ``settings`` are its
    settings (defaults: the record's). Data-based criteria read the training data of the
    ``datamodule`` given to ``compute_masks``. After
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
        #: where a criterion may keep content-addressed statistics (OBD's Hessian diagonal); the
        #: one-shot prune after fit sets it (paths.cache_dir/saliency), None elsewhere
        self.cache_dir: Path | None = None

    def _scores(self, model: torch.nn.Module, names: list[str], dm) -> dict[str, torch.Tensor]:
        self._ctx = criteria.Context(model, names, dm, self.seed, self.settings, cache=self.cache_dir)
        scores, self.data_used = self.criterion.score(self._ctx)
        return scores

    def classes(self, model: torch.nn.Module) -> dict[str, list[str]]:
        """The class -> parameter names this pruner may prune (``allocation.prunable_classes``)."""
        shapes = {n: p.shape for n, p in model.named_parameters()}
        return prunable_classes(
            model.weight_classes(), shapes, self.include_biases, self.include_embeddings, self.exclude
        )

    def apply(self, model: torch.nn.Module, masks: MaskSet) -> None:
        """Write the criterion's new weights (if it moved any), then zero the pruned ones."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, w in self.new_weights.items():
                params[n].copy_(w)
        masks.apply(model)

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
        ``amount`` (default: the pruner's), ``prior``: masks of an earlier event, whose pruned
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
