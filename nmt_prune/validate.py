"""Checks of the plain keys of a run's config, before any work, with messages a user can act on.

Each error names the key, the bad value and what is valid. ``ConfigError`` marks a user's
mistake in the config: ``run.py`` prints it as one line (no Python traceback) and exits 2.
Rules that involve the ``prune`` node live in ``experiment.validate_prune``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A value in the config that cannot work; the message says which and what would."""


class DataMissing(ConfigError, FileNotFoundError):
    """Data files a job needs that are not there and cannot be fetched (a wrong ``data.root``, no
    network for the download): a user's mistake like any ``ConfigError`` (one line, exit 2), and
    still a ``FileNotFoundError`` for code that catches that."""


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
    "optim.lr": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "trainer.max_epochs": (lambda v: _is_int(v) and (v >= 1 or v == -1), "an integer >= 1 (or -1: no cap)"),
    "eval.beam_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1 (1 = greedy)"),
    "eval.val_beam_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1 (1 = greedy)"),
    "eval.max_len_ratio": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "eval.max_len_extra": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "eval.max_len_cap": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "eval.length_penalty": (lambda v: _is_number(v) and v >= 0, "a number >= 0 (0 = off)"),
    "loss.label_smoothing": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
}


def check_basics(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first key of ``RULES`` whose value cannot work."""
    for key, (ok, valid) in RULES.items():
        value = OmegaConf.select(cfg, key, default="<missing>")
        if value == "<missing>":
            continue
        if not ok(value):
            raise ConfigError(f"{key}={value!r}; must be {valid}")
