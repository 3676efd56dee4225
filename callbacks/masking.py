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
from nmt_prune.schedules import Schedule, han_dropout

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
        metrics = {"prune/sparsity": rep["sparsity"], "prune/sparsity_no_embed": rep["sparsity_no_embed"]}
        metrics.update({f"prune/sparsity/{c}": v for c, v in rep["sparsity_by_class"].items()})
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

    def _scores(self, model: torch.nn.Module, names: list[str], dm) -> dict[str, torch.Tensor]:
        scores, self.data_used = self.criterion.score(
            criteria.Context(model, names, dm, self.seed, self.settings)
        )
        return scores

    def compute_masks(
        self,
        model: torch.nn.Module,
        datamodule=None,
        amount: float | None = None,
        prior: MaskSet | None = None,
        threshold: float | None = None,
    ) -> MaskSet:
        """Scores -> exact-count masks over the configured prunable parameters (weights untouched).

        class-distribution's sigma_c: the standard deviation of the class's weights for
        ``magnitude`` (See et al.'s definition), of the class's scores for the other criteria.
        ``amount`` (default: the callback's), ``prior``: masks of an earlier event, whose pruned
        weights stay pruned (``allocation.allocate``). ``threshold``: prune every weight whose
        score is below it (below threshold x sigma_c for ``distribution``: See et al.'s lambda),
        plus the prior's, but never more than ``amount``.
        """
        amount = self.amount if amount is None else amount
        params = dict(model.named_parameters())
        classes = prunable_classes(
            model.weight_classes(), {n: p.shape for n, p in params.items()},
            self.include_biases, self.include_embeddings, self.exclude,
        )  # fmt: skip
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
        return MaskSet(allocate(scores, classes, amount, self.scheme, scale, prior_masks))

    def prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.masks = self.compute_masks(pl_module.model, trainer.datamodule)
        self.masks.apply(pl_module.model)
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
        event = {"step": step, "epoch": trainer.current_epoch, "target": target,
                 "sparsity": rep["sparsity"], "n_pruned": self.masks.n_pruned(),
                 "saliency_s": self.saliency_s, "seconds": seconds}  # fmt: skip
        if self.dropout_adjust:
            event["dropout"] = dict(model.dropout_p)
        self.events.append(event)
        log.info("step %d (epoch %d): pruned %s/%s to %.4f (target %.4f), %.1f s",
                 step, trainer.current_epoch, self.method, self.scheme, rep["sparsity"],
                 target, seconds)  # fmt: skip

    def _adjust_dropout(self, model: torch.nn.Module) -> None:
        model.set_dropout(han_dropout_rates(model, self.masks, self.base_dropout))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last_step": self.last_step, "events": self.events,
                "base_dropout": self.base_dropout, "frozen": self.frozen}  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.last_step = state_dict.get("last_step", -1)
        self.events = list(state_dict.get("events", []))
        self.base_dropout = state_dict.get("base_dropout")
        self.frozen = dict(state_dict.get("frozen", {}))
