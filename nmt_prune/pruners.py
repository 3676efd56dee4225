"""The pruning callbacks and schedules a job's config asks for, built and described (results.json
``prune``)."""

from __future__ import annotations

import logging
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from callbacks.scheduled import ScheduledPruning
from nmt_prune import schedules
from nmt_prune.data.datamodule import NMTDataModule
from nmt_prune.module import NMTModule
from nmt_prune.plan import Plan

log = logging.getLogger(__name__)


def steps_per_epoch(cfg: DictConfig, dm: NMTDataModule) -> int:
    """Optimizer steps per training epoch as Lightning runs them: trainer.overfit_batches (when
    > 0) replaces trainer.limit_train_batches; with trainer.accumulate_grad_batches=k the
    optimizer steps every k batches and at the end of the epoch. (ScheduledPruning fails the job
    if its last event is not reached anyway.)"""
    n = len(dm.train_dataloader())
    overfit = cfg.trainer.get("overfit_batches") or 0
    limit = overfit if overfit else cfg.trainer.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        n = min(n, limit)
    elif isinstance(limit, float):
        n = max(1, int(n * limit))
    return math.ceil(n / (cfg.trainer.get("accumulate_grad_batches") or 1))


def build_schedule(cfg: DictConfig, dm: NMTDataModule, timing: str) -> schedules.Schedule:
    """The job's schedule over the fit it prunes in: the retraining (after_fit: its epochs are
    ``schedules.fit_epochs``) or the whole training (during). Raises before any training if the
    schedule does not fit."""
    p = OmegaConf.to_container(cfg.prune, resolve=True, enum_to_str=True)
    epochs = cfg.trainer.max_epochs if timing == "during" else schedules.fit_epochs(p["schedule"], p)
    if epochs < 1:
        key = "trainer.max_epochs" if timing == "during" else "prune.retrain.epochs"
        raise ValueError(f"prune.schedule={p['schedule']} needs training to prune during: {key}=0")
    return schedules.build(p["schedule"], p["pct"], p, steps_per_epoch(cfg, dm), epochs)


#: prune.obd.estimator=exact costs one backward pass per weight: tiny models only
EXACT_MAX_WEIGHTS = 50_000


def check_exact_size(cfg: DictConfig, module: NMTModule) -> None:
    if cfg.prune.method == "obd" and cfg.prune.obd.estimator == "exact":
        n = sum(p.numel() for p in module.model.parameters())
        if n > EXACT_MAX_WEIGHTS:
            raise ValueError(
                f"prune.obd.estimator=exact needs one backward pass per weight and this model has {n:,} "
                f"parameters (limit {EXACT_MAX_WEIGHTS:,}); use estimator fisher or ggn_mc, or model=tiny"
            )


def make_pruner(cls: type, plan: Plan, *extra: Any, **kwargs: Any):
    """A pruning callback of the job's plan (``cls``: one per timing)."""
    return cls(
        *extra,
        plan.method,
        plan.scheme,
        plan.amount,
        **kwargs,
        include_biases=plan.include_biases,
        include_embeddings=plan.include_embeddings,
        exclude=plan.exclude,
        seed=plan.seed,
        settings=dict(plan.settings),
    )


def scheduled_pruner(cfg: DictConfig, plan: Plan, schedule: schedules.Schedule) -> ScheduledPruning:
    p = cfg.prune
    return make_pruner(
        ScheduledPruning,
        plan,
        schedule,
        regrow=p.regrow,
        dropout_adjust=p.dropout_adjust,
        threshold=p.iterative.threshold,
    )


def prune_info_record(cfg: DictConfig, plan: Plan, pruner, masks) -> dict[str, Any]:
    info = OmegaConf.to_container(cfg.prune, resolve=True, enum_to_str=True)
    info.update(
        timing=plan.timing,
        amount=plan.amount,
        n_pruned=masks.n_pruned(),
        n_prunable=masks.n_masked(),
        data_used=pruner.data_used,
    )
    if isinstance(pruner, ScheduledPruning):
        info["events"] = pruner.events
    return info
