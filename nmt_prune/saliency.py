"""Saliency criteria: parameters (and what else a criterion needs) -> one score per weight.

Pure functions on tensors. A higher score means more important: allocation prunes the lowest.
Each returns ``{name: float tensor shaped like the parameter}`` for the names it is given.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

CRITERIA = ("magnitude", "random")


def magnitude(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """|w| (See, Luong & Manning 2016, sect. 3: magnitude-based pruning)."""
    return {n: p.detach().abs().float() for n, p in params.items()}


def random(params: Mapping[str, Tensor], seed: int) -> dict[str, Tensor]:
    """i.i.d. U(0, 1) scores from a generator seeded with ``seed`` (the random-pruning control).

    Drawn on CPU in the order of ``params`` so the mask depends on the seed only, not on the
    device or on the global RNG state.
    """
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g).to(p.device) for n, p in params.items()}


def scores(method: str, params: Mapping[str, Tensor], seed: int = 0) -> dict[str, Tensor]:
    """Dispatch by name; raises with the valid choices for an unknown one."""
    if method == "magnitude":
        return magnitude(params)
    if method == "random":
        return random(params, seed)
    raise ValueError(f"prune.method={method!r}; valid choices: {CRITERIA}")
