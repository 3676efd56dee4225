"""Pruning criteria: one record per criterion carries its rules and its score function.

A criterion says how much each prunable weight matters; the allocation scheme (``allocation``)
then decides how many weights each class loses. Everything else that depends on the criterion
reads its record here: the config checks (``plan.validate_prune``: timings, schedules, the
class-distribution scale), the mask computation (``callbacks.masking``), the sweep and
end-to-end tests. **Adding a criterion** is one score function and one ``REGISTRY`` entry (and,
when it has settings, their node in ``conf/prune/default.yaml`` with the same defaults), plus
its test against an independent reference.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmt_prune.names import TIMINGS
from nmt_prune.validate import check_int, check_positive

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the records are read by the config checks before torch is imported
    from torch import Tensor, nn


@dataclass(frozen=True)
class Context:
    """What a score function gets: the model, the names of the prunable parameters, the data
    module (None if the job has none), the seed and the criterion's settings."""

    model: nn.Module
    names: list[str]
    dm: Any
    seed: int
    settings: dict[str, Any]
    #: what a score function leaves for the criterion's ``finish`` (OBS: Hessians, traces)
    state: dict[str, Any] = field(default_factory=dict)
    #: a directory for content-addressed saliency statistics (OBD's Hessian diagonal); None: none
    cache: Path | None = None


Scores = tuple["dict[str, Tensor]", "dict[str, Any]"]  # scores by parameter name, what data they used


@dataclass(frozen=True)
class Criterion:
    name: str
    #: Context -> (scores, data_used); higher score = more important
    score: Callable[[Context], Scores]
    timings: tuple[str, ...]
    default_timing: str
    #: can it rank weights again inside a schedule (iterative, gradual, linear)?
    schedulable: bool
    #: class-distribution's sigma_c: std of the class's "weights" (See et al.'s definition), of its
    #: "scores", or None: the criterion has no scale, class-distribution is refused
    scale: str | None
    #: why the timings it refuses are refused (the error message says it)
    why: str = ""
    #: its settings node under ``prune`` (None: none) and their defaults
    settings: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    #: settings -> None or a ValueError naming the key (``plan.validate_prune`` calls it)
    check: Callable[[dict[str, Any]], None] | None = None
    #: after the allocation: (Context, keep-masks) -> (keep-masks, new weights of the pruned
    #: matrices); may choose other weights of a row (same counts) and move the kept ones (OBS)
    finish: Callable[[Context, dict[str, Tensor]], tuple[dict[str, Tensor], dict[str, Tensor]]] | None = None


def _saliency():
    from nmt_prune import saliency  # imported when scoring: the registry loads without torch

    return saliency


def _params(ctx: Context) -> dict[str, Tensor]:
    params = dict(ctx.model.named_parameters())
    return {n: params[n] for n in ctx.names}


def _needs_data(ctx: Context, name: str) -> None:
    if ctx.dm is None:
        raise ValueError(f"prune.method={name} needs training data: give a datamodule")


def _magnitude(ctx: Context) -> Scores:
    return _saliency().magnitude(_params(ctx)), {}


def _random(ctx: Context) -> Scores:
    return _saliency().random(_params(ctx), ctx.seed), {}


def _obd(ctx: Context) -> Scores:
    _needs_data(ctx, "obd")
    s, sal = ctx.settings, _saliency()
    examples = ctx.dm.sample_examples(s["sentences"], ctx.seed)
    h, cached = _hessian_diagonal(ctx, examples)
    zero = sal.zero_curvature(h)
    used = {
        "sentences": len(examples),
        "tokens": sum(b["ntok"] for b in examples),
        "estimator": s["estimator"],
        "samples": s["samples"],
        "zero_curvature": sum(zero.values()),
        "zero_curvature_by_param": zero,
        "hessian_cached": cached,
    }
    if zero:
        n_zero, everything = sum(zero.values()), ctx.dm.train_size()
        total = sum(h[n].numel() for n in ctx.names)
        where = ", ".join(f"{n} {c}" for n, c in zero.items())
        if len(examples) < everything:
            log.warning(
                "OBD: %d of %d weights (%.1f%%) have zero estimated curvature (%s): no sentence of the "
                "%d-sentence sample sends them a gradient, so they score 0 and are pruned first; "
                "prune.obd.sentences=%d estimates on the whole training set",
                n_zero, total, 100 * n_zero / total, where, len(examples), everything,
            )  # fmt: skip
        else:  # rows no training sentence uses (padding, unused symbols): free to prune indeed
            log.info("OBD: %d weights get no gradient from any training sentence (%s)", n_zero, where)
    return sal.obd(ctx.model, ctx.names, examples, h=h), used


def _hessian_diagonal(ctx: Context, examples: list) -> tuple[dict[str, Tensor], bool]:
    """OBD's Hessian diagonal, from ``ctx.cache`` when the same weights, sentences and settings
    made it before (nmt_prune/stat_cache.py), else computed (and stored there)."""
    from nmt_prune import stat_cache

    s, params = ctx.settings, dict(ctx.model.named_parameters())

    def compute() -> dict[str, Tensor]:
        sal = _saliency()
        return sal.hessian_diagonal(ctx.model, ctx.names, examples, s["estimator"], s["samples"], ctx.seed)

    if s["estimator"] == "exact":  # tiny models only: nothing worth keeping
        return compute(), False
    tensors = [params[n] for n in ctx.names] + [t for b in examples for t in (b["src"], b["tgt_out"])]
    key = stat_cache.fingerprint(tensors, "obd", ctx.names, s["estimator"], s["samples"], ctx.seed)
    return stat_cache.cached(ctx.cache, "obd-hessian", key, compute, params[ctx.names[0]].device)


def _batches(ctx: Context, name: str, fraction: int | float) -> tuple[list[dict], dict[str, Any]]:
    _needs_data(ctx, name)
    batches = ctx.dm.first_train_batches(fraction)
    used = {
        "batches": len(batches),
        "sentences": sum(len(b["idx"]) for b in batches),
        "tokens": sum(b["ntok"] for b in batches),
    }
    return batches, used


def snip_spelling(s: dict[str, Any]) -> dict[str, Any]:
    """``prune.snip`` in the current spelling: the old one, an integer in ``fraction`` (training
    batches, before 2026-11-22), becomes ``batches``. Read by ``snip_data`` and by the resumable
    study's config comparison (resume.comparable), which must see a job run under the old spelling
    as the same job."""
    f = s.get("fraction")
    if isinstance(f, int) and not isinstance(f, bool):
        return {**s, "batches": f, "fraction": None}
    return dict(s)


def snip_data(s: dict[str, Any]) -> int | float:
    """What SNIP scores on: ``fraction`` of the training set if set, else ``batches`` batches.
    The old spelling, an integer in ``fraction`` (batches), is read as batches with a warning."""
    current = snip_spelling(s)
    if current.get("fraction") != s.get("fraction"):
        f = s["fraction"]
        warnings.warn(
            f"prune.snip.fraction={f} (an integer: {f} training batches) is deprecated; "
            f"write prune.snip.batches={f} (prune.snip.fraction now takes a fraction in (0, 1] only)",
            FutureWarning,
            stacklevel=2,
        )
    f = current["fraction"]
    return current["batches"] if f is None else f


def _snip(ctx: Context) -> Scores:
    data = snip_data(ctx.settings)
    batches, used = _batches(ctx, "snip", data)
    return _saliency().snip(ctx.model, ctx.names, batches), {**used, "data": data}


def _taylor(ctx: Context) -> Scores:
    batches, used = _batches(ctx, "taylor", ctx.settings["batches"])
    return _saliency().taylor(ctx.model, ctx.names, batches), used


def _check_obd(s: dict[str, Any]) -> None:  # (the estimator is a closed choice: nmt_prune/schema.py)
    for key in ("sentences", "samples"):
        check_int(f"prune.obd.{key}", s[key])


def _check_snip(s: dict[str, Any]) -> None:
    check_int("prune.snip.batches", s["batches"], what=" (training batches)")
    f = s["fraction"]
    if f is None or (isinstance(f, int) and not isinstance(f, bool) and f >= 1):  # (old spelling)
        return
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
        raise ValueError(
            f"prune.snip.fraction={f!r}; a fraction of the training set in (0, 1], or null "
            "(then prune.snip.batches batches)"
        )


def _obs(ctx: Context) -> Scores:
    from nmt_prune import obs

    _needs_data(ctx, "obs")
    s = ctx.settings
    scores, state, used = obs.scores(ctx.model, ctx.names, ctx.dm, s["sentences"], ctx.seed, s["damp"])
    ctx.state.update(state)
    return scores, used


def _obs_finish(ctx: Context, keep: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    from nmt_prune import obs

    return obs.finish(ctx.model, ctx.state, keep)


def _check_obs(s: dict[str, Any]) -> None:
    check_int("prune.obs.sentences", s["sentences"])
    check_positive("prune.obs.damp", s["damp"], " (lambda of H + lambda mean(diag H) I)")


REGISTRY: dict[str, Criterion] = {
    c.name: c
    for c in (
        Criterion("magnitude", _magnitude, TIMINGS, "after_fit", schedulable=True, scale="weights"),
        Criterion("random", _random, TIMINGS, "after_fit", schedulable=True, scale=None),
        Criterion(
            "obd",
            _obd,
            ("after_fit",),
            "after_fit",
            schedulable=True,
            scale="scores",
            why="OBD's saliency assumes a trained model (zero gradient)",
            settings="obd",
            defaults={"estimator": "fisher", "sentences": 1000, "samples": 1},
            check=_check_obd,
        ),
        Criterion(
            "snip",
            _snip,
            ("at_init",),
            "at_init",
            schedulable=False,
            scale="scores",
            why="SNIP is a criterion at initialisation that prunes once (Lee et al. 2019)",
            settings="snip",
            defaults={"batches": 1, "fraction": None},
            check=_check_snip,
        ),
        Criterion(
            "taylor",
            _taylor,
            ("after_fit", "during"),
            "after_fit",
            schedulable=True,
            scale="scores",
            why="first-order Taylor ranks the weights of a model being trained or trained (at "
            "initialisation it is SNIP: use prune.method=snip)",
            settings="taylor",
            defaults={"batches": 8},
            check=lambda s: check_int("prune.taylor.batches", s["batches"], what=" (training batches)"),
        ),
        Criterion(
            "obs",
            _obs,
            ("after_fit",),
            "after_fit",
            schedulable=False,
            scale="scores",
            why="layer-wise OBS prunes a trained model once and moves the weights it keeps "
            "(Hassibi & Stork 1993; Frantar & Alistarh 2022)",
            settings="obs",
            defaults={"sentences": 1000, "damp": 0.01},
            check=_check_obs,
            finish=_obs_finish,
        ),
    )
}
NAMES = tuple(REGISTRY)


def get(name: str) -> Criterion:
    if name not in REGISTRY:
        raise ValueError(f"prune.method={name!r}; valid choices: {', '.join(NAMES)}")
    return REGISTRY[name]
