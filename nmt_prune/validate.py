"""Checks of the plain keys of a run's config, before any work, with messages a user can act on.

Each error names the key, the bad value and what is valid. ``ConfigError`` marks a user's
mistake in the config: ``run.py`` prints it as one line (no Python traceback) and exits 2.
Rules that involve the ``prune`` node live in ``experiment.validate_prune``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nmt_prune.names import ATTENTION_TYPES, LOSS_NORMALIZATIONS


class ConfigError(ValueError):
    """A value in the config that cannot work; the message says which and what would."""


class DataMissing(ConfigError, FileNotFoundError):
    """Data files a job needs that are not there and cannot be fetched (a wrong ``data.root``, no
    network for the download): a user's mistake like any ``ConfigError`` (one line, exit 2), and
    still a ``FileNotFoundError`` for code that catches that."""


class DataUnusable(ConfigError):
    """Data files that are there but cannot be used: not UTF-8, source and target of different
    lengths, an empty split or vocabulary, a download whose checksum is wrong. A user's data, not
    a bug: one line naming the file and what to do, exit 2 (they were tracebacks)."""


class Diverged(RuntimeError):
    """A fit whose training or validation loss became inf or NaN (callbacks/divergence.py): the
    job fails with where and at which learning rate; ``run.py`` prints it as one line, exits 1.
    Defined here, free of torch, so run.py can catch it without importing Lightning first."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_int(key: str, v: Any, low: int = 1, what: str = "") -> None:
    """An integer >= ``low`` (not a bool), or a ValueError naming the key."""
    if not _is_int(v) or v < low:
        raise ValueError(f"{key}={v!r}; must be an integer >= {low}{what}")


def check_positive(key: str, v: Any, what: str = "") -> None:
    """A number > 0 (not a bool), or a ValueError naming the key."""
    if not _is_number(v) or not v > 0:
        raise ValueError(f"{key}={v!r}; must be a number > 0{what}")


#: rewind=reinit draws theta_0' from the run's seed plus this (never equal to the original theta_0)
REINIT_SEED_OFFSET = 1_000_003
#: the largest seed: numpy's 2**32 - 1 less that offset
SEED_MAX = 2**32 - 1 - REINIT_SEED_OFFSET

#: key -> (test, what is valid)
RULES: dict[str, tuple[Any, str]] = {
    # numpy's generators (seeded by Lightning's seed_everything) take 0 .. 2**32 - 1
    "seed": (lambda v: _is_int(v) and 0 <= v <= SEED_MAX, f"an integer in [0, {SEED_MAX:,}]"),
    "threads": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "data.batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "data.eval_batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "data.min_freq": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "data.max_len": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "model.emb_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "model.hidden_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "model.layers": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "model.dropout": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "model.attention": (lambda v: v in ATTENTION_TYPES, f"one of {', '.join(ATTENTION_TYPES)}"),
    "model.input_feeding": (lambda v: isinstance(v, bool), "true or false"),
    "model.reverse_source": (lambda v: isinstance(v, bool), "true or false"),
    "optim.lr": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "trainer.max_epochs": (lambda v: _is_int(v) and (v >= 1 or v == -1), "an integer >= 1 (or -1: no cap)"),
    "eval.beam_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1 (1 = greedy)"),
    "eval.val_beam_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1 (1 = greedy)"),
    "eval.max_len_ratio": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "eval.max_len_extra": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "eval.max_len_cap": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "eval.length_penalty": (lambda v: _is_number(v) and v >= 0, "a number >= 0 (0 = off)"),
    "loss.label_smoothing": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "loss.normalize": (lambda v: v in LOSS_NORMALIZATIONS, f"one of {', '.join(LOSS_NORMALIZATIONS)}"),
}


def check_basics(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first key of ``RULES`` whose value cannot work."""
    for key, (ok, valid) in RULES.items():
        value = OmegaConf.select(cfg, key, default="<missing>")
        if value == "<missing>":
            continue
        if not ok(value):
            raise ConfigError(f"{key}={value!r}; must be {valid}")


#: the config tree (conf/): ``+NAME=...`` where conf/NAME/ is a directory appends a config group
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
#: nodes handed whole to a library as keyword arguments (Lightning's ``Trainer(**trainer)``):
#: ``+trainer.X=v`` may add any argument of it (experiment.check_trainer_keys checks the names)
FREE_NODES = ("trainer",)


def no_such_key(key: str, valid: list[str], where: str = "") -> ConfigError:
    """The error for a key no code reads: the key, the closest valid one, the valid keys beside it."""
    parent, _, leaf = key.rpartition(".")
    close = difflib.get_close_matches(leaf, valid, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    listed = ", ".join(valid)
    return ConfigError(f"{key}: no such key{hint}; valid keys of {parent or 'the config'}: {listed}{where}")


def check_added_keys(cfg: DictConfig, overrides: list[str] | tuple[str, ...] = ()) -> None:
    """Raise ``ConfigError`` for a ``+key=value`` override that adds a key no code reads (Hydra
    suggests ``+eval.beam=0`` for a mistyped ``eval.beam=0``: the job would run with the default
    beam and say nothing). Config groups (``+sweep=NAME``), ``FREE_NODES``, ``hydra`` (Hydra's own)
    and ``prune`` (checked against its schema, plan.check) pass."""
    for o in overrides:
        if not o.startswith("+") or o.startswith("++"):  # ++: set or add, Hydra's force
            continue
        key = o[1:].split("=", 1)[0]
        top = key.split(".", 1)[0]
        if top in (*FREE_NODES, "prune", "hydra") or (CONF_DIR / key.replace(".", "/")).is_dir():
            continue
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        keys = sorted(str(k) for k in node.keys() if k != leaf) if isinstance(node, DictConfig) else []
        raise no_such_key(key, keys, " (a `+` adds a key that nothing reads)")
