"""Pruning schedules: training step -> target sparsity (cumulative), and the steps they prune at.

A schedule's value is the fraction of the prunable weights that must be zero after the pruning
event at or before ``step``; it never means "a fraction of what remains" (the compounding rule of
``torch.nn.utils.prune`` and Lightning's ``ModelPruning``). Steps count optimizer steps of the
fit the schedule runs in (``trainer.global_step``); a pruning event at step t happens before the
t-th optimizer step, so an event at 0 prunes before any update.

- ``one_shot``: ``s_f`` from ``t0`` on (what prune-after-fit and prune-at-init do).
- ``iterative`` (Han et al. 2015, "Learning both Weights and Connections", sect. 3.3): rounds of
  prune -> retrain; round r starts at ``starts[r]`` and prunes to ``targets[r]`` (equal steps
  to the final target by default).
- ``gradual`` (Zhu & Gupta 2017, "To prune, or not to prune", eq. 1):
  s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3 for t in {t0, t0 + dt, ..., t0 + n dt}.
- ``linear`` (Cheong & Daniel 2019, "transformers.zip", sect. 3): start at X, add (Y - X) / k
  every m steps until Y.

Between events a schedule holds the value of the last event (the sparsity the model has).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nmt_prune.names import SCHEDULES  # noqa: F401  (re-exported)


def one_shot(step: int, final: float, t0: int = 0) -> float:
    return final if step >= t0 else 0.0


def iterative(step: int, targets: Sequence[float], starts: Sequence[int]) -> float:
    """Round r (``starts[r] <= step < starts[r + 1]``) holds ``targets[r]``; 0 before round 0."""
    value = 0.0
    for start, target in zip(starts, targets):
        if step >= start:
            value = target
    return value


def gradual(step: int, initial: float, final: float, t0: int, n: int, dt: int) -> float:
    """Zhu & Gupta 2017 eq. 1, evaluated at the last pruning step t0 + i dt <= step (i <= n)."""
    if step < t0:
        return 0.0
    i = min(n, (step - t0) // dt)
    return final + (initial - final) * (1.0 - i / n) ** 3


def linear(step: int, initial: float, final: float, t0: int, k: int, m: int) -> float:
    """Cheong & Daniel 2019: X at t0, then + (Y - X) / k every m steps, Y after k increments."""
    if step < t0:
        return 0.0
    j = min(k, (step - t0) // m)
    return initial + (final - initial) * j / k


@dataclass(frozen=True)
class Schedule:
    """A named schedule: ``target(step)`` and the steps at which it prunes (``events``)."""

    name: str
    final: float
    events: tuple[int, ...]
    fn: Callable[[int], float]

    def __call__(self, step: int) -> float:
        return self.fn(step)

    def describe(self) -> str:
        pts = ", ".join(f"{t}:{self(t):.4f}" for t in self.events[:6])
        more = f", ... ({len(self.events)} events)" if len(self.events) > 6 else ""
        return f"{self.name} to {self.final:.4f}: step:target {pts}{more}"


def _epochs_to_step(key: str, epochs: float, steps_per_epoch: int) -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or epochs < 0:
        raise ValueError(f"{key}={epochs!r}; must be a number of epochs >= 0")
    return int(round(epochs * steps_per_epoch))


def _positive_int(key: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{key}={v!r}; must be an integer >= 1")
    return v


def _pct(key: str, v, upper: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= upper:
        raise ValueError(f"{key}={v!r}; must be a percentage in [0, {upper:g}]")
    return v / 100


def build(
    name: str,
    final_pct: float,
    cfg: dict,
    steps_per_epoch: int,
    epochs: int,
) -> Schedule:
    """The schedule ``name`` for a fit of ``epochs`` x ``steps_per_epoch`` optimizer steps.

    ``cfg``: the ``prune`` node as a dict (``iterative``, ``gradual``, ``linear`` sub-nodes).
    Errors name the key and value, and say when a schedule would not reach its final sparsity
    within the fit (checked before any training).
    """
    if name not in SCHEDULES:
        raise ValueError(f"prune.schedule={name!r}; valid choices: {', '.join(SCHEDULES)}")
    final = final_pct / 100
    total = steps_per_epoch * epochs
    if name == "one_shot":
        return Schedule(name, final, (0,), lambda t: one_shot(t, final))
    if name == "iterative":
        it = cfg["iterative"]
        per_round = [e * steps_per_epoch for e in iterative_epochs(it, cfg["retrain"]["epochs"])]
        rounds = len(per_round)
        starts = [sum(per_round[:r]) for r in range(rounds)]
        if it.get("targets") is None:
            targets = [final * (r + 1) / rounds for r in range(rounds)]
        else:
            tl = list(it["targets"])
            if len(tl) != rounds:
                raise ValueError(
                    f"prune.iterative.targets={tl}: {len(tl)} values for {rounds} rounds "
                    f"(prune.iterative.rounds)"
                )
            targets = [_pct("prune.iterative.targets", v, 100) for v in tl]
            if any(b < a for a, b in zip(targets, targets[1:])) or not math.isclose(targets[-1], final):
                raise ValueError(
                    f"prune.iterative.targets={tl}: must be non-decreasing and end at prune.pct={final_pct}"
                )
        return Schedule(name, final, tuple(starts), lambda t: iterative(t, targets, starts))
    if name == "gradual":
        g = cfg["gradual"]
        initial = _pct("prune.gradual.initial_pct", g["initial_pct"], final_pct)
        t0 = _epochs_to_step("prune.gradual.start_epoch", g["start_epoch"], steps_per_epoch)
        end_epoch = g.get("end_epoch")
        end_epoch = 0.75 * epochs if end_epoch is None else end_epoch
        t_end = _epochs_to_step("prune.gradual.end_epoch", end_epoch, steps_per_epoch)
        dt = g.get("every_steps")
        dt = max(1, (t_end - t0) // 10) if dt is None else _positive_int("prune.gradual.every_steps", dt)
        n = (t_end - t0) // dt
        if n < 1:
            raise ValueError(
                f"prune.gradual: start_epoch={g['start_epoch']} to end_epoch={end_epoch} is "
                f"{t_end - t0} steps, shorter than every_steps={dt}"
            )
        if t0 + n * dt >= total:
            raise ValueError(
                f"prune.gradual.end_epoch={end_epoch}: the last pruning step {t0 + n * dt} is "
                f"not inside the fit ({epochs} epochs = {total} steps)"
            )
        events = tuple(t0 + i * dt for i in range(n + 1))
        return Schedule(name, final, events, lambda t: gradual(t, initial, final, t0, n, dt))
    lin = cfg["linear"]
    initial = _pct("prune.linear.initial_pct", lin["initial_pct"], final_pct)
    t0 = _epochs_to_step("prune.linear.start_epoch", lin["start_epoch"], steps_per_epoch)
    k = _positive_int("prune.linear.increments", lin["increments"])
    m = lin.get("every_steps")
    m = max(1, (int(0.75 * total) - t0) // k) if m is None else _positive_int("prune.linear.every_steps", m)
    if t0 + k * m >= total:
        raise ValueError(
            f"prune.linear: start step {t0} + increments {k} x every_steps {m} = {t0 + k * m} "
            f"is not inside the fit ({epochs} epochs = {total} steps)"
        )
    events = tuple(t0 + j * m for j in range(k + 1))
    return Schedule(name, final, events, lambda t: linear(t, initial, final, t0, k, m))


def iterative_epochs(it: dict, retrain_epochs: int) -> list[int]:
    """Retraining epochs of each iterative round (``prune.iterative.epochs``, default
    ``prune.retrain.epochs`` per round)."""
    rounds = _positive_int("prune.iterative.rounds", it["rounds"])
    epochs = it.get("epochs")
    epochs = retrain_epochs if epochs is None else epochs
    per_round = list(epochs) if isinstance(epochs, (list, tuple)) else [epochs] * rounds
    bad = any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in per_round)
    if len(per_round) != rounds or bad:
        raise ValueError(
            f"prune.iterative.epochs={epochs!r}; one integer >= 1 (epochs per round) "
            f"or a list of {rounds} (prune.iterative.rounds)"
        )
    return per_round


def fit_epochs(name: str, cfg: dict) -> int:
    """Epochs of the retraining fit a schedule runs in after a dense fit: the sum of the
    iterative rounds' epochs, else ``prune.retrain.epochs``."""
    if name == "iterative":
        return sum(iterative_epochs(cfg["iterative"], cfg["retrain"]["epochs"]))
    return cfg["retrain"]["epochs"]


def han_dropout(base: float, connections: int, nonzero: int) -> float:
    """Han et al. 2015 eq. 2: D_r = D_o sqrt(C_r / C_o) for a layer with C_o connections of which
    C_r survive."""
    if connections <= 0:
        raise ValueError("a layer needs at least one connection")
    return base * math.sqrt(nonzero / connections)
