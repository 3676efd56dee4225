"""The ``prune`` node checked before any work: every rule that involves several of its keys.

``validate_prune(cfg)`` returns the job's timing (None for a dense job) or raises a ``ValueError``
that names the key, the bad value and the valid choices, or the incompatible pair.
``check(cfg)``: every check of a job's config (``validate.check_basics``, unknown ``prune`` keys,
``validate_prune``), as ``ConfigError``; it imports neither torch nor Lightning, so ``run.py``
runs it first and a wrong value fails in about a second. ``plan_job(cfg)``: the checked config as
a frozen ``Plan`` (plain values, the amount as a fraction computed once), what the pipelines
build their pruners from. Types and closed choices are checked earlier, while Hydra composes
(nmt_prune/schema.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nmt_prune import criteria, schema
from nmt_prune.names import (
    CONVERGENCE_RULES,
    EMBEDDING_CLASSES,
    class_names,
)
from nmt_prune.validate import (
    ConfigError,
    check_added_keys,
    check_basics,
    check_int,
    check_positive,
    no_such_key,
)


def _theta0_of(ckpt: str) -> Path | None:
    """theta0.pt of the run that wrote ``ckpt``: beside it (cache) or in the run directory."""
    for d in (Path(ckpt).parent, Path(ckpt).parent.parent):
        if (d / "theta0.pt").is_file():
            return d / "theta0.pt"
    return None


# --------------------------------------------------------------------------- pruning
def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{key}={value!r}; valid choices: {', '.join(choices)}")


def _excluded(p: DictConfig, layers: int | None = None) -> list[str]:
    """prune.exclude as a list (``prune.exclude=softmax`` means ``[softmax]``); with
    ``prune.only=CLASS``, every other class (``layers``: the model's, to name them)."""
    if p.get("only") and layers is not None:
        return [c for c in class_names(layers) if c != p.only]
    return [p.exclude] if isinstance(p.exclude, str) else list(p.exclude or [])


def _check_rpp(p: DictConfig, timing: str) -> None:
    r = p.rpp
    check_int("prune.rpp.epochs", r.epochs, 0, " (0: no RPP phase)")
    check_int("prune.rpp.refresh", r.refresh, 1, " (optimizer steps)")
    for key in ("lam", "eps"):
        check_positive(f"prune.rpp.{key}", r[key])
    if r.epochs > 0 and (timing != "after_fit" or p.schedule != "one_shot" or p.rewind != "none"):
        raise ValueError(
            f"prune.rpp.epochs={r.epochs} needs prune.timing=after_fit, prune.schedule=one_shot "
            f"and prune.rewind=none (RPP trains the dense model before one pruning); got "
            f"timing={timing}, schedule={p.schedule}, rewind={p.rewind}"
        )


def validate_prune(cfg: DictConfig) -> str | None:
    """Check the ``prune`` node before any work; return the timing (None: a dense job, pct=0).

    Every error names the key, the bad value and the valid choices, or the incompatible pair.
    """
    p = cfg.prune
    pct = p.pct
    if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 <= pct < 100:
        raise ValueError(f"prune.pct={pct!r}; must be a number in [0, 100) (percent of prunable weights)")
    crit = criteria.get(p.method)
    timing = crit.default_timing if p.timing == "auto" else p.timing  # prune.timing=auto
    if timing not in crit.timings:
        raise ValueError(
            f"prune.method={p.method} with prune.timing={timing}: {crit.why}; "
            f"use prune.timing=auto or {' or '.join(crit.timings)}"
        )
    _validate_schedule(p, timing)
    for c in criteria.REGISTRY.values():  # every criterion's settings, used or not
        if c.check is not None:
            c.check({**c.defaults, **OmegaConf.to_container(p[c.settings])})
    _check_rpp(p, timing)
    classes = class_names(cfg.model.layers)
    if p.only is not None:
        _choice("prune.only", p.only, tuple(classes))
        if _excluded(p):
            raise ValueError(
                f"prune.only={p.only} with prune.exclude={_excluded(p)}: prune.only already "
                f"keeps every other class dense; set one of them"
            )
        if not p.include_embeddings and p.only in EMBEDDING_CLASSES:
            raise ValueError(f"prune.only={p.only} with prune.include_embeddings=false: nothing to prune")
    bad = [c for c in _excluded(p) if c not in classes]
    if bad:
        raise ValueError(
            f"prune.exclude={_excluded(p)} names unknown classes {bad}; valid choices: {', '.join(classes)}"
        )
    r = p.retrain
    check_int("prune.retrain.epochs", r.epochs, 0, " (0 = no retraining)")
    check_positive("prune.retrain.lr_factor", r.lr_factor)
    check_int("prune.retrain.halve_every", r.halve_every)
    if r.until == "converged" and cfg.lr_schedule.name not in CONVERGENCE_RULES:
        raise ValueError(
            f"prune.retrain.until=converged with lr_schedule={cfg.lr_schedule.name}: retraining "
            f"converges by the job's rule; set lr_schedule={' or '.join(CONVERGENCE_RULES)} "
            f"(it rules the dense training too)"
        )
    if crit.scale is None and p.scheme == "distribution":
        raise ValueError(
            f"prune.method={p.method} with prune.scheme=distribution: its scores have no "
            f"class scale to normalise by; use prune.scheme=blind or uniform"
        )
    if pct == 0 and p.timing == "after_fit":  # the dense control: the baseline retrained, nothing pruned
        if p.schedule != "one_shot" or p.rewind != "none":
            raise ValueError(
                f"prune.pct=0 with prune.timing=after_fit (the dense control: the baseline "
                f"retrained with the retraining recipe) takes prune.schedule=one_shot and "
                f"prune.rewind=none; got schedule={p.schedule}, rewind={p.rewind}"
            )
        return "after_fit"
    if pct == 0:
        if p.schedule != "one_shot":
            raise ValueError(
                f"prune.schedule={p.schedule} with prune.pct=0: a pct=0 job trains the dense "
                f"model and prunes nothing; set prune.pct > 0 (the final sparsity)"
            )
        for key in ("baseline",):
            if p[key]:
                raise ValueError(
                    f"prune.{key}={p[key]!r} with prune.pct=0: a pct=0 job trains the dense "
                    f"model and prunes nothing; set prune.pct > 0"
                )
        if p.rewind != "none":
            raise ValueError(f"prune.rewind={p.rewind} with prune.pct=0: nothing is pruned; set pct > 0")
        return None
    if timing in ("at_init", "during"):
        for key, bad_value in (("baseline", bool(p.baseline)), ("rewind", p.rewind != "none")):
            if bad_value:
                raise ValueError(
                    f"prune.{key}={p[key]!r} with prune.timing={timing} (method {p.method}): "
                    f"this timing trains from the initialisation; {key} applies "
                    f"to pruning after fit"
                )
    if p.baseline:
        if not Path(p.baseline).is_file():
            raise FileNotFoundError(f"prune.baseline={p.baseline} does not exist")
        if p.rewind == "init" and _theta0_of(p.baseline) is None:
            raise ValueError(
                f"prune.rewind=init with prune.baseline={p.baseline}: no theta0.pt (the initial "
                f"weights) next to it; use a checkpoint from an nmt-prune dense run, or rewind=reinit"
            )
    return timing


def _validate_schedule(p: DictConfig, timing: str) -> None:
    """The schedule's own checks that need no data (those that do: ``schedules.build``)."""
    scheduled = p.schedule != "one_shot"
    crit = criteria.get(p.method)
    if scheduled and not crit.schedulable:
        raise ValueError(
            f"prune.method={p.method} with prune.schedule={p.schedule}: {crit.why}; "
            f"use prune.schedule=one_shot"
        )
    if timing == "during" and p.schedule not in ("gradual", "linear"):
        raise ValueError(
            f"prune.timing=during with prune.schedule={p.schedule}: pruning while training from "
            f"scratch needs prune.schedule=gradual or linear"
        )
    if timing == "at_init" and scheduled:
        raise ValueError(
            f"prune.schedule={p.schedule} with prune.timing=at_init: at_init prunes once "
            f"before training; use prune.timing=during (gradual, linear from scratch) "
            f"or after_fit"
        )
    if scheduled and p.rewind != "none":
        raise ValueError(
            f"prune.rewind={p.rewind} with prune.schedule={p.schedule}: rewinding applies to "
            f"one-shot pruning; use prune.rewind=none"
        )
    for key in ("regrow", "dropout_adjust"):
        if not isinstance(p[key], bool):
            raise ValueError(f"prune.{key}={p[key]!r}; must be true or false")
    if p.regrow and (not scheduled or p.method != "magnitude"):
        raise ValueError(
            f"prune.regrow=true with prune.schedule={p.schedule}, prune.method={p.method}: "
            f"regrowth ranks pruned weights by the magnitude they were pruned at; it needs "
            f"a schedule (iterative, gradual, linear) and prune.method=magnitude"
        )
    if p.dropout_adjust and not scheduled and p.retrain.epochs == 0:
        raise ValueError(
            "prune.dropout_adjust=true with prune.retrain.epochs=0: nothing trains after pruning"
        )
    thr = p.iterative.threshold
    if thr is not None:
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or thr <= 0:
            raise ValueError(f"prune.iterative.threshold={thr!r}; must be a number > 0 (or null)")
        if p.schedule != "iterative" or p.method != "magnitude" or p.scheme == "uniform":
            raise ValueError(
                f"prune.iterative.threshold={thr} needs prune.schedule=iterative, prune.method=magnitude and "
                f"prune.scheme=blind (|w| < threshold) or distribution (|w| < threshold x sigma_c); got "
                f"schedule={p.schedule}, method={p.method}, scheme={p.scheme}"
            )


def _unknown_keys(node: Any, known: Any, prefix: str) -> list[tuple[str, list[str]]]:
    """(key, the valid keys beside it) for every key of ``node`` that ``known`` lacks."""
    if not isinstance(node, dict) or not isinstance(known, dict):
        return []
    out = [(f"{prefix}{k}", sorted(known)) for k in node if k not in known]
    for k, v in node.items():
        if k in known and isinstance(known[k], dict):
            out += _unknown_keys(v, known[k], f"{prefix}{k}.")
    return out


def check(cfg: DictConfig, overrides: list[str] | tuple[str, ...] = ()) -> str | None:
    """Every check of the config before any work; the job's timing (None: a dense job).
    ``overrides``: the job's command-line overrides (keys added with ``+``)."""
    check_basics(cfg)
    check_added_keys(cfg, overrides)
    known = OmegaConf.to_container(OmegaConf.structured(schema.Prune))  # every key a job may set
    bad = _unknown_keys(OmegaConf.to_container(cfg.prune), known, "prune.")
    if bad:  # Hydra lets ``+prune.X`` add a key the schema lacks
        key, valid = bad[0]
        raise no_such_key(key, valid, " (conf/prune/default.yaml)")
    try:
        return validate_prune(cfg)
    except (ValueError, FileNotFoundError) as e:  # all of them a mistake in the config
        raise ConfigError(str(e)) from None


@dataclass(frozen=True)
class Retraining:
    """``prune.retrain``: See et al.'s retraining of the survivors (rewind=none)."""

    until: str  # epochs | converged
    epochs: int  # the count (until=epochs) or the cap (until=converged)
    lr_factor: float
    halve_every: int


@dataclass(frozen=True)
class Plan:
    """What a job does with its model, checked (``plan_job``): plain ``str``/numbers, no config
    nodes. ``timing`` None: a dense job (pct=0; the dense control is ``after_fit``)."""

    timing: str | None
    method: str
    scheme: str
    amount: float  # prune.pct / 100: the fraction of the prunable weights
    schedule: str
    rewind: str
    include_biases: bool
    include_embeddings: bool
    exclude: tuple[str, ...]  # the classes kept dense (prune.exclude, or all but prune.only)
    seed: int  # of the random criterion: prune.seed, else the run's
    retrain: Retraining
    settings: dict[str, Any] = field(default_factory=dict)  # the criterion's settings node

    @property
    def criterion(self) -> criteria.Criterion:
        return criteria.get(self.method)


def plan_job(cfg: DictConfig, overrides: list[str] | tuple[str, ...] = ()) -> Plan:
    """``check(cfg, overrides)``, then the job's ``Plan``."""
    timing = check(cfg, overrides)
    p = cfg.prune
    crit = criteria.get(str(p.method))
    r = p.retrain
    return Plan(
        timing=timing,
        method=str(p.method),
        scheme=str(p.scheme),
        amount=p.pct / 100,
        schedule=str(p.schedule),
        rewind=str(p.rewind),
        include_biases=bool(p.include_biases),
        include_embeddings=bool(p.include_embeddings),
        exclude=tuple(str(c) for c in _excluded(p, cfg.model.layers)),
        seed=int(cfg.seed if p.seed is None else p.seed),
        settings=OmegaConf.to_container(p[crit.settings], enum_to_str=True) if crit.settings else {},
        retrain=Retraining(str(r.until), int(r.epochs), float(r.lr_factor), int(r.halve_every)),
    )
