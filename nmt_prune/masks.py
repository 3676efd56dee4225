"""MaskSet: boolean keep-masks keyed by parameter name; apply, enforce, save, report.

A mask is ``True`` where the weight is kept and ``False`` where it is pruned. Parameters are never
renamed or re-parametrised (no ``weight_orig``, unlike ``torch.nn.utils.prune``): the model stays
an ordinary module, so nn.LSTM flat weights, ``copy.deepcopy`` and checkpoints work unchanged.

Pruned weights are held at exactly zero by two operations that together cover every optimiser:
``mask_grads`` (before the step: the pruned network's gradient, also what gradient clipping
sees) and ``apply`` (after the step: momentum, Adam moments and weight decay can move a pruned
weight, re-zeroing undoes that). ``attach`` registers ``apply`` as an optimizer step post-hook so
no training loop can forget it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from nmt_prune.stats import sparsity_report


class MaskSet:
    """Boolean keep-masks ``{parameter name: bool tensor of the parameter's shape}``."""

    def __init__(self, masks: Mapping[str, Tensor]) -> None:
        for name, m in masks.items():
            if m.dtype != torch.bool:
                raise TypeError(f"mask {name!r} has dtype {m.dtype}; masks are bool (True = kept)")
        self.masks: dict[str, Tensor] = dict(masks)

    # ----------------------------------------------------------------------- enforcement
    def _params(self, model: nn.Module) -> dict[str, nn.Parameter]:
        params = dict(model.named_parameters())
        missing = [n for n in self.masks if n not in params]
        if missing:
            raise KeyError(f"masks for parameters the model does not have: {missing}")
        for n, m in self.masks.items():
            if m.shape != params[n].shape:
                raise ValueError(f"mask {n!r} has shape {tuple(m.shape)}, parameter {tuple(params[n].shape)}")
        return params

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero every pruned weight in place (masks move to the parameter's device once)."""
        params = self._params(model)
        for n, m in self.masks.items():
            p = params[n]
            if m.device != p.device:
                m = self.masks[n] = m.to(p.device)
            p.mul_(m)

    @torch.no_grad()
    def mask_grads(self, model: nn.Module) -> None:
        """Zero the gradient of every pruned weight (call between backward and the step)."""
        params = self._params(model)
        for n, m in self.masks.items():
            g = params[n].grad
            if g is not None:
                g.mul_(m.to(g.device))

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        """Re-zero pruned weights after every ``optimizer.step()``; returns the hook handle."""
        return optimizer.register_step_post_hook(lambda opt, args, kwargs: self.apply(model))

    # ----------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Tensor]:
        """Plain ``{name: bool tensor}`` on CPU: loads with ``torch.load(weights_only=True)``."""
        return {n: m.detach().cpu().clone() for n, m in self.masks.items()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> MaskSet:
        return cls({n: m.bool() for n, m in state.items()})

    def __and__(self, other: MaskSet) -> MaskSet:
        """Weights kept by both (pruning is monotone across iterative rounds)."""
        names = set(self.masks) | set(other.masks)
        out = {}
        for n in names:
            a, b = self.masks.get(n), other.masks.get(n)
            out[n] = a if b is None else b if a is None else a & b.to(a.device)
        return MaskSet(out)

    def __len__(self) -> int:
        return len(self.masks)

    def n_pruned(self) -> int:
        return sum(int((~m).sum()) for m in self.masks.values())

    def n_masked(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    # ----------------------------------------------------------------------- reports
    def report(self, model: nn.Module, classes: Mapping[str, Iterable[str]]) -> dict:
        """Sparsity of the model's current weights over the masked parameters
        (``nmt_prune.stats.sparsity_report``): it measures what the model really is."""
        self._params(model)  # clear errors for masks the model does not match
        return sparsity_report(model, list(self.masks), classes)


#: key of the masks in a checkpoint's ``callbacks`` dict (the same for every pruning callback, so
#: ``masks_from_checkpoint`` needs no knowledge of which one wrote it)
STATE_KEY = "nmt_prune.masks"


def masks_from_checkpoint(path: str) -> MaskSet | None:
    """The masks saved in a Lightning checkpoint, or None if it has none (a dense model)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("callbacks", {}).get(STATE_KEY)
    return MaskSet.from_state_dict(state["masks"]) if state and state.get("masks") else None
