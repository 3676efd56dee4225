"""Parameter counts and sparsity: overall, by See et al. weight class, by parameter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from nmt_prune.allocation import EMBEDDING_CLASSES, prunable_classes


def sparsity_report(model: nn.Module, names: Sequence[str], classes: Mapping[str, Iterable[str]]) -> dict:
    """Zeros in the model's current weights over the parameters ``names`` (the prunable ones).

    ``sparsity`` (all of ``names``), ``sparsity_no_embed`` (without the embedding classes),
    ``sparsity_by_class`` (classes with at least one of ``names``), ``sparsity_by_param``, and
    ``params`` {total, prunable (= the size of ``names``), nonzero (all parameters)}.
    """
    params = dict(model.named_parameters())
    zeros = {n: int((params[n] == 0).sum()) for n in names}
    sizes = {n: params[n].numel() for n in names}
    by_class = {}
    emb_z = emb_n = 0
    for cls, members in classes.items():
        members = [n for n in members if n in zeros]
        if not members:
            continue
        z, s = sum(zeros[n] for n in members), sum(sizes[n] for n in members)
        by_class[cls] = z / s
        if cls in EMBEDDING_CLASSES:
            emb_z, emb_n = emb_z + z, emb_n + s
    z_all, n_all = sum(zeros.values()), sum(sizes.values())
    return {
        "sparsity": z_all / n_all if n_all else 0.0,
        "sparsity_no_embed": (z_all - emb_z) / (n_all - emb_n) if n_all > emb_n else 0.0,
        "sparsity_by_class": by_class,
        "sparsity_by_param": {n: zeros[n] / sizes[n] for n in names},
        "params": {
            "total": sum(p.numel() for p in params.values()),
            "prunable": n_all,
            "nonzero": sum(int((p != 0).sum()) for p in params.values()),
        },
    }


def param_stats(model: nn.Module) -> dict:
    """``sparsity_report`` over the default prunable set (every class's weight matrices,
    embeddings included, biases not: See et al. 2016), for dense runs."""
    shapes = {n: p.shape for n, p in model.named_parameters()}
    classes = model.weight_classes()
    names = [n for ns in prunable_classes(classes, shapes).values() for n in ns]
    return sparsity_report(model, names, classes)


def max_pruned_abs(
    model: nn.Module, masks: Mapping[str, Tensor], classes: Mapping[str, Iterable[str]]
) -> dict:
    """Per class, the largest |w| among the weights ``masks`` prune (call before applying them):
    the x axis of See et al.'s Fig. 4 (change in perplexity vs the largest magnitude removed).
    Classes with nothing pruned are left out."""
    params = dict(model.named_parameters())
    out = {}
    for cls, names in classes.items():
        vals = [params[n].detach()[~masks[n]].abs().max() for n in names if n in masks and (~masks[n]).any()]
        if vals:
            out[cls] = float(torch.stack(vals).max())
    return out
