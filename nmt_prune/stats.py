"""Parameter counts and sparsity by See et al. weight class."""

from __future__ import annotations

from nmt_prune.model import Seq2Seq


def param_stats(model: Seq2Seq) -> dict:
    """Counts of a model's parameters and the fraction that is exactly zero.

    Prunable here means every weight matrix of every class (embeddings included, biases not),
    the project's default (See et al. 2016 prune weights, not biases). Returns
    ``params`` {total, prunable, nonzero}, ``sparsity`` (zero fraction of prunable weights) and
    ``sparsity_by_class`` {class: zero fraction of its weight matrices}.
    """
    params = dict(model.named_parameters())
    by_class, zeros_all, n_all = {}, 0, 0
    for cls, names in model.weight_classes().items():
        ws = [params[n] for n in names if params[n].dim() >= 2]
        n = sum(w.numel() for w in ws)
        z = sum(int((w == 0).sum()) for w in ws)
        by_class[cls] = z / n
        zeros_all, n_all = zeros_all + z, n_all + n
    total = sum(p.numel() for p in params.values())
    nonzero = sum(int((p != 0).sum()) for p in params.values())
    return {
        "params": {"total": total, "prunable": n_all, "nonzero": nonzero},
        "sparsity": zeros_all / n_all,
        "sparsity_by_class": by_class,
    }
