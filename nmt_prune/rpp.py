"""Reweighted proximal pruning (RPP; Guo, Liu, Mungall, Lin & Wang 2019, arXiv:1909.12486, sect. 3):
a training phase that drives small weights to exactly zero, which a pruning allocation then
finishes (it sets the exact final count) before the usual retraining.

Instead of adding a penalty lambda sum_i alpha_i |w_i| to the loss (whose gradient pulls every
weight, large ones included, and changes the objective the optimiser follows), every optimizer
step on the training loss alone is followed by the penalty's proximal operator, soft
thresholding:

    w_i <- sign(w_i) max(|w_i| - lr lambda alpha_i, 0)

with ``lr`` the step's learning rate, and reweighted l1 (Candes, Wakin & Boyd 2008):
alpha_i = 1 / (|w_i| + eps), refreshed from the current weights every ``refresh`` optimizer steps,
so a weight near zero gets a threshold up to lambda / eps times the learning rate and a large one
almost none (plain l1 shrinks both alike: the seed notes' objection). Only the job's prunable
weights (its classes, biases excluded unless ``include_biases``) are thresholded.

``penalty=l1`` replaces the proximal steps by what the RPP paper argues against (its baseline):
lambda sum_i |w_i| added to the training loss (``NMTModule.penalty``, the same term as
``loss.weight_penalty.type=l1``), whose subgradient lambda sign(w) enters every step, clipping and
Adam's normalisation included, and pulls large and small weights alike; it leaves almost no exact
zeros, and the allocation prunes by magnitude as after RPP. It covers every weight matrix (that
term's definition): with the default classes (biases excluded, embeddings included) the same
weights RPP thresholds; with ``prune.exclude`` also the excluded ones. The phase is otherwise the
same (epochs, LR), so the two compare at equal training.

Choices: the phase starts from the trained dense model and uses the retraining optimiser (the
training optimiser at ``retrain.lr_factor`` x its LR, LR constant) for ``rpp.epochs`` epochs;
``lambda`` and ``eps`` are hyperparameters to choose on the validation set. With Adam every
weight moves by about ``lr`` per step whatever its gradient, so a weight is held at zero only where
lr lambda alpha >= lr, i.e. |w| <= lambda - eps: lambda must exceed eps to zero anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from nmt_prune.training import build_module, make_trainer

log = logging.getLogger(__name__)


def soft_threshold(w: Tensor, thresh: Tensor | float) -> Tensor:
    """The proximal operator of thresh * |w| (elementwise): sign(w) max(|w| - thresh, 0)."""
    return torch.sign(w) * torch.clamp(w.abs() - thresh, min=0.0)


def reweight(w: Tensor, eps: float) -> Tensor:
    """alpha = 1 / (|w| + eps): the reweighting step of Candes, Wakin & Boyd 2008."""
    return 1.0 / (w.detach().abs() + eps)


class ProximalReweighting(pl.Callback):
    """After every optimizer step: soft-threshold the named parameters by lr x lambda x alpha;
    alpha refreshed every ``refresh`` steps. Its state (alpha, steps) travels in checkpoints."""

    def __init__(self, names: Sequence[str], lam: float, eps: float, refresh: int) -> None:
        self.names, self.lam, self.eps, self.refresh = list(names), lam, eps, refresh
        self.alpha: dict[str, Tensor] = {}
        self.steps = 0
        self._handles: list[Any] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        params = dict(pl_module.model.named_parameters())
        ps = {n: params[n] for n in self.names}
        if not self.alpha:
            self.alpha = {n: reweight(p, self.eps) for n, p in ps.items()}

        @torch.no_grad()
        def after_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
            lr = optimizer.param_groups[0]["lr"]
            for n, p in ps.items():
                p.copy_(soft_threshold(p, (lr * self.lam) * self.alpha[n].to(p.device)))
            self.steps += 1
            if self.steps % self.refresh == 0:  # alpha from the weights as this step left them
                self.alpha = {n: reweight(p, self.eps) for n, p in ps.items()}

        for opt in trainer.optimizers:
            self._handles.append(opt.register_step_post_hook(after_step))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "steps": self.steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.alpha, self.steps = state_dict["alpha"], state_dict["steps"]


def zero_fraction(model: torch.nn.Module, names: Sequence[str]) -> float:
    """The share of the named parameters' entries that are exactly zero."""
    params = dict(model.named_parameters())
    zeros = sum(int((params[n] == 0).sum()) for n in names)
    return zeros / sum(params[n].numel() for n in names)


def l1_norm(model: torch.nn.Module, names: Sequence[str]) -> float:
    """sum |w| over the named parameters."""
    params = dict(model.named_parameters())
    return float(sum(params[n].detach().abs().sum() for n in names))


def phase(cfg: DictConfig, dm, out, module, names: Sequence[str]) -> dict[str, Any]:
    """Train ``module`` (the dense model) for ``prune.rpp.epochs`` with the proximal steps, at the
    retraining LR held constant; its weights end as the phase leaves them (the last step, not the
    best epoch: the point is where the thresholding has brought them). Returns results.json
    ``rpp``. Its checkpoints go to ``out/rpp`` (a killed job runs the phase again)."""
    r = cfg.prune.rpp
    pcfg = cfg.copy()
    OmegaConf.set_struct(pcfg, False)
    pcfg.optim.lr = cfg.optim.lr * cfg.prune.retrain.lr_factor
    pcfg.lr_schedule = {"name": "none"}
    callbacks: list[pl.Callback] = []
    if r.penalty == "l1":
        pcfg.loss.weight_penalty = {"type": "l1", "strength": r.lam}
    else:
        callbacks.append(ProximalReweighting(names, r.lam, r.eps, r.refresh))
    pmodule = build_module(pcfg, dm)
    pmodule.model.load_state_dict(module.model.state_dict())
    norm_before = l1_norm(module.model, names)
    trainer = make_trainer(pcfg, out / "rpp", False, callbacks, max_epochs=r.epochs)
    trainer.fit(pmodule, datamodule=dm)
    module.model.load_state_dict(pmodule.model.state_dict())
    rec = {
        **OmegaConf.to_container(r),
        "steps": trainer.global_step,
        "fit_s": pmodule.fit_s(),
        "zero_fraction": zero_fraction(module.model, names),
        "l1_norm_ratio": l1_norm(module.model, names) / norm_before,  # sum |w| after / before
        "val_ppl": [h.get("val_ppl") for h in pmodule.history],
    }
    log.info(
        "rpp (%s): %d epochs, %.1f%% of the prunable weights exactly zero, val ppl %s",
        r.penalty,
        r.epochs,
        100 * rec["zero_fraction"],
        rec["val_ppl"][-1] if rec["val_ppl"] else None,
    )
    return rec
