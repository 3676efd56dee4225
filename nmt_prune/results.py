"""results.json, the contract every job leaves (DESIGN.md "Contracts"): its blocks and the report
columns read from them, defined once. The pipeline writes the blocks, ``loggers.summary_values``
flattens ``FIGURE_BLOCKS`` into W&B's run summary, and the report (``report_read``) reads
``PATH_COLUMNS`` from the same paths; a new block or column is one line here.
"""

from __future__ import annotations

from typing import Any

#: the blocks that hold figures (scalars, or nested dicts of them), in the order W&B shows them
FIGURE_BLOCKS = (
    "status",
    "error",
    "prune",
    "sparsity",
    "sparsity_no_embed",
    "sparsity_by_class",
    "val_ppl",
    "val_bleu",
    "test_ppl",
    "test_bleu",
    "test_bleu_lc",
    "test_bleu_tok_lc",
    "pruned",
    "dense",
    "timings",
    "params",
    "training",
    "dead",
    "export",
    "layer_error",
    "rpp",
    "machine",
)

#: report column -> its path in results.json (the columns the report computes are in report_read)
PATH_COLUMNS: dict[str, tuple[str, ...]] = {
    "data_sentences": ("prune", "data_used", "sentences"),
    "sparsity": ("sparsity",),
    "test_bleu": ("test_bleu",),
    "test_bleu_lc": ("test_bleu_lc",),
    "test_ppl": ("test_ppl",),
    "val_ppl": ("val_ppl",),
    "pruned_test_bleu": ("pruned", "test_bleu"),
    "pruned_test_ppl": ("pruned", "test_ppl"),
    "dense_test_bleu": ("dense", "test_bleu"),
    "dense_test_ppl": ("dense", "test_ppl"),
    "train_s": ("timings", "train_s"),
    "prune_s": ("timings", "prune_s"),
    "saliency_s": ("timings", "saliency_s"),
    "retrain_s": ("timings", "retrain_s"),
    "epochs": ("training", "epochs"),
    "stop_reason": ("training", "stop_reason"),
    "dense_epochs": ("dense", "training", "epochs"),
    "dead_softmax_words": ("dead", "by_class", "softmax", "fraction"),
    "dead_token_share": ("dead", "softmax_dead_token_share"),
    "dead_attention_keys": ("dead", "attention_keys", "fraction"),
    "export_fp16_bytes": ("export", "fp16"),
    "export_fp16_ratio": ("export", "fp16_ratio"),
    "hidden_size": ("config", "model", "hidden_size"),
    "nonzero_params": ("params", "nonzero"),
    "rpp_zero_fraction": ("rpp", "zero_fraction"),
    "device": ("machine", "device"),
}


def get(d: Any, *keys: str, default: Any = None) -> Any:
    """``d[k1][k2]...``, or ``default`` where a key (or a dict on the way) is missing."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def path_values(res: dict[str, Any]) -> dict[str, Any]:
    """Every ``PATH_COLUMNS`` column of one results.json."""
    return {c: get(res, *path) for c, path in PATH_COLUMNS.items()}
