"""Allocation: scores + weight classes + amount -> keep-masks that prune an exact count.

See, Luong & Manning 2016 ("Compression of NMT Models via Pruning"), sect. 3.3:
- ``blind``: one global ranking of all prunable weights (class-blind).
- ``uniform``: the same fraction x inside every class (class-uniform).
- ``distribution``: prune |w| < lambda * sigma_c in class c, one global lambda for all classes
  (class-distribution; sigma_c = standard deviation of class c's weights). Thresholding
  |w| / sigma_c against lambda is a global ranking of |w| / sigma_c, so it is computed as one:
  exact count, no bisection (tests check it against a bisection on lambda).

Every scheme prunes exactly ``round(amount * N)`` of the N prunable weights. Ties are broken
deterministically: by a stable sort over the parameters concatenated in the order given (the
model's ``named_parameters`` order), so the earlier weight is pruned first. For ``uniform``,
round(x * N_c) per class need not add up to round(x * N); the per-class counts are apportioned
by largest remainder so the total is exact and each class is within one weight of x * N_c.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from nmt_prune.names import EMBEDDING_CLASSES, SCHEMES  # noqa: F401  (re-exported)


def prunable_classes(
    classes: Mapping[str, Sequence[str]],
    shapes: Mapping[str, torch.Size],
    include_biases: bool = False,
    include_embeddings: bool = True,
    exclude: Sequence[str] = (),
) -> dict[str, list[str]]:
    """The class -> parameter names that may be pruned under the configuration.

    Weights (dim >= 2) of every class; biases (dim 1) only with ``include_biases``; the
    embedding classes unless ``include_embeddings`` is false; ``exclude`` removes whole classes.
    Classes left empty are dropped. Unknown names in ``exclude`` raise with the valid choices.
    """
    unknown = [c for c in exclude if c not in classes]
    if unknown:
        raise ValueError(
            f"prune.exclude={list(exclude)} names unknown classes {unknown}; valid choices: {list(classes)}"
        )
    out = {}
    for cls, names in classes.items():
        if cls in exclude or (not include_embeddings and cls in EMBEDDING_CLASSES):
            continue
        keep = [n for n in names if len(shapes[n]) >= 2 or include_biases]
        if keep:
            out[cls] = keep
    return out


def _prune_lowest(flat: Tensor, k: int) -> Tensor:
    """Keep-mask over ``flat`` with its k lowest entries False (stable: earlier index first)."""
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if k > 0:
        order = torch.sort(flat, stable=True).indices
        keep[order[:k]] = False
    return keep


def _split(flat: Tensor, names: Sequence[str], like: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out, i = {}, 0
    for n in names:
        size = like[n].numel()
        out[n] = flat[i : i + size].view(like[n].shape)
        i += size
    return out


def n_to_prune(amount: float, n: int) -> int:
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount={amount} must be a fraction in [0, 1)")
    return round(amount * n)


def apportion(amount: float, sizes: Sequence[int], at_least: Sequence[int] | None = None) -> list[int]:
    """Per-class counts near ``amount * size`` that add up to exactly round(amount * sum(sizes)).

    Largest-remainder (Hamilton) apportionment; ties go to the earlier class. ``at_least``: lower
    bounds per class (the counts already pruned, so that pruning stays monotone across events).
    """
    total = n_to_prune(amount, sum(sizes))
    ideal = [amount * s for s in sizes]
    low = list(at_least) if at_least is not None else [0] * len(sizes)
    counts = [max(int(x), lo) for x, lo in zip(ideal, low)]
    rest = total - sum(counts)
    if rest < 0:
        raise ValueError(
            f"cannot prune {total} weights while keeping the {sum(low)} already pruned "
            f"within one weight of {amount:.4f} per class; raise the target"
        )
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(ideal[i] - counts[i]), i))
    for i in by_remainder[:rest]:
        counts[i] += 1
    return counts


def allocate(
    scores: Mapping[str, Tensor],
    classes: Mapping[str, Sequence[str]],
    amount: float,
    scheme: str,
    class_scale: Mapping[str, float] | None = None,
    prior: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Keep-masks ``{name: bool tensor}`` pruning exactly round(amount x N) scored weights.

    ``scores``: one tensor per prunable parameter (higher = more important). ``classes``:
    class -> parameter names (only names in ``scores`` count). ``class_scale``: sigma_c for
    ``distribution`` (see ``class_std``); required for that scheme only. ``prior``: keep-masks of
    an earlier pruning event; the weights it pruned are pruned first (their scores count as
    -inf; for ``uniform`` each class prunes at least as many as before), so the new masks are a
    subset of the prior's whenever the amount does not decrease (monotone schedules).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"prune.scheme={scheme!r}; valid choices: {SCHEMES}")
    groups = {c: [n for n in names if n in scores] for c, names in classes.items()}
    groups = {c: ns for c, ns in groups.items() if ns}
    order = [n for ns in groups.values() for n in ns]
    if sorted(order) != sorted(scores):
        raise ValueError("every scored parameter must belong to exactly one class")
    if prior is not None:
        scores = {
            n: s.masked_fill(~prior[n].to(s.device), float("-inf")) if n in prior else s
            for n, s in scores.items()
        }
    if scheme == "uniform":
        masks = {}
        sizes = [sum(scores[n].numel() for n in ns) for ns in groups.values()]
        low = None
        if prior is not None:
            low = [sum(int((~prior[n]).sum()) for n in ns if n in prior) for ns in groups.values()]
        for ns, k in zip(groups.values(), apportion(amount, sizes, low)):
            flat = torch.cat([scores[n].reshape(-1) for n in ns])
            masks.update(_split(_prune_lowest(flat, k), ns, scores))
        return masks
    if scheme == "distribution":
        if class_scale is None:
            raise ValueError("scheme=distribution needs class_scale (sigma_c per class)")
        parts = [scores[n].reshape(-1) / class_scale[c] for c, ns in groups.items() for n in ns]
    else:
        parts = [scores[n].reshape(-1) for n in order]
    flat = torch.cat(parts)
    return _split(_prune_lowest(flat, n_to_prune(amount, flat.numel())), order, scores)


def class_std(params: Mapping[str, Tensor], classes: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """sigma_c: the (population) standard deviation of all weights of class c together."""
    out = {}
    for cls, names in classes.items():
        ws = [params[n].detach().reshape(-1).float() for n in names if n in params]
        if ws:
            std = float(torch.cat(ws).std(correction=0))
            if std == 0.0:
                raise ValueError(f"class {cls!r} has all-equal weights: sigma_c = 0")
            out[cls] = std
    return out
