"""The ``prune`` node's schema: every key, its type and, for the closed choices, its values.

Registered in Hydra's ConfigStore as ``prune/schema``; ``conf/prune/default.yaml`` extends it
(``defaults: [schema, _self_]``), so composition converts and checks every key: a value of the
wrong type (``prune.obd.sentences=abc``) or a name outside a closed choice
(``prune.scheme=blnd``) fails while Hydra composes the config, in about a second, with the valid
choices, before run.py is entered. The fields have no defaults (MISSING): the values, and what
each key means, live once, in ``conf/prune/default.yaml``; a key that file lacks stays MISSING
and fails when read (tests/test_config.py composes the defaults and finds none).

The choices are read from where they are defined (``names``, the criterion registry), so a new
criterion or scheme is a choice here without an edit. What the schema cannot say stays as code
in ``plan.check``: ranges, keys unknown to the schema (``+prune.X``; Hydra lets ``+`` add them),
class names that depend on the model, and every rule that involves several keys.

Values of a choice are ``Choice`` members: ``str`` subclasses equal to, hashed, formatted and
repr'd as their name (``cfg.prune.scheme == "uniform"``, ``f"{scheme}"`` is ``uniform``, JSON
writes the name), so the code that reads them compares strings as before. ``plan.plan_job`` hands
the pipeline plain ``str`` (nothing of this module is pickled into a checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from nmt_prune import criteria
from nmt_prune.names import (
    OBD_ESTIMATORS,
    PRUNE_TIMINGS,
    RETRAIN_UNTIL,
    REWINDS,
    RPP_PENALTIES,
    SCHEDULES,
    SCHEMES,
)


class Choice(str, Enum):
    """A closed choice whose members behave as their names wherever a ``str`` is expected."""

    __str__ = str.__str__
    __format__ = str.__format__
    __repr__ = str.__repr__  # error messages show prune.rewind='init', as for any other string


def _choice(name: str, values: tuple[str, ...]) -> type[Choice]:
    return Choice(name, {v: v for v in values}, module=__name__, qualname=name)


Timing = _choice("Timing", PRUNE_TIMINGS)
Schedule = _choice("Schedule", SCHEDULES)
Method = _choice("Method", criteria.NAMES)
Scheme = _choice("Scheme", SCHEMES)
Rewind = _choice("Rewind", REWINDS)
RetrainUntil = _choice("RetrainUntil", RETRAIN_UNTIL)
ObdEstimator = _choice("ObdEstimator", OBD_ESTIMATORS)
RppPenalty = _choice("RppPenalty", RPP_PENALTIES)

# Any: a key that takes an int or a float (OmegaConf has no Union), a list or one name, or a
# number whose type the records keep as written (pct=80 stays 80, not 80.0); plan.check checks it.


@dataclass
class Obd:
    estimator: ObdEstimator = MISSING
    sentences: int = MISSING
    samples: int = MISSING


@dataclass
class Snip:
    batches: int = MISSING
    fraction: Any = MISSING  # a float, or null; an int is the old spelling of batches (plan.check)


@dataclass
class Taylor:
    batches: int = MISSING


@dataclass
class Obs:
    sentences: int = MISSING
    damp: float = MISSING


@dataclass
class Rpp:
    penalty: RppPenalty = MISSING
    epochs: int = MISSING
    lam: float = MISSING
    eps: float = MISSING
    refresh: int = MISSING


@dataclass
class Iterative:
    rounds: int = MISSING
    targets: Any = MISSING
    epochs: Any = MISSING
    threshold: float | None = MISSING


@dataclass
class Gradual:
    initial_pct: Any = MISSING
    start_epoch: Any = MISSING
    end_epoch: Any = MISSING
    every_steps: int | None = MISSING


@dataclass
class Linear:
    initial_pct: Any = MISSING
    increments: int = MISSING
    every_steps: int | None = MISSING
    start_epoch: Any = MISSING


@dataclass
class Retrain:
    until: RetrainUntil = MISSING
    epochs: int = MISSING
    lr_factor: float = MISSING
    halve_every: int = MISSING


@dataclass
class Prune:
    timing: Timing = MISSING
    schedule: Schedule = MISSING
    method: Method = MISSING
    scheme: Scheme = MISSING
    pct: Any = MISSING
    include_biases: bool = MISSING
    include_embeddings: bool = MISSING
    exclude: Any = MISSING
    only: str | None = MISSING
    seed: int | None = MISSING
    baseline: str | None = MISSING
    obd: Obd = field(default_factory=Obd)
    snip: Snip = field(default_factory=Snip)
    taylor: Taylor = field(default_factory=Taylor)
    obs: Obs = field(default_factory=Obs)
    rpp: Rpp = field(default_factory=Rpp)
    iterative: Iterative = field(default_factory=Iterative)
    gradual: Gradual = field(default_factory=Gradual)
    linear: Linear = field(default_factory=Linear)
    regrow: bool = MISSING
    dropout_adjust: bool = MISSING
    rewind: Rewind = MISSING
    retrain: Retrain = field(default_factory=Retrain)


ConfigStore.instance().store(group="prune", name="schema", node=Prune)
