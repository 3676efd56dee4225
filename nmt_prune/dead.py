"""Dead capacity: the rows, columns and units a mask leaves with no surviving weight.

Pruning by a global ranking can empty whole rows of a matrix. Such a row is not a smaller
weight, it is a missing piece of the model, which explains a collapse that the sparsity alone
does not:

- an empty **embedding row** (``src_embed``, ``tgt_embed``): a word that vanishes, its vector is 0;
- an empty **softmax row** (``softmax``, W_s): a target word that can only ever get its bias, the
  same logit in every context; ``softmax_dead_token_share`` is the share of training target
  tokens (words and </s>) that are such words; ``embed_dead_token_share`` is, per embedding class,
  the share of the training tokens the model reads (source words and </s>; target <s> and words)
  whose row is empty;
- a **dead LSTM gate unit** (``encoder.layer{k}``, ``decoder.layer{k}``): a row of the 4H gate
  pre-activations with no input and no recurrent weight left, a constant gate;
- a **dead attention unit** (``attention``): a row of W_c (a unit of h~_t = tanh(W_c [c; h]))
  with no weight left: always tanh(0) = 0;
- an **empty key unit** (``attention_keys``, general attention only): a row of W_a with no weight
  left, a dimension of the keys W_a h_s that is 0 for every source word, so the score
  h_t^T W_a h_s (Luong et al. 2015 eq. 8) ignores that unit of h_t. With every row empty
  (``uniform``), the score is 0 at every position: the attention is the plain average of the
  source states, whatever the decoder's state (SNIP at 90% does this: docs/study.md, finding 7).

Per parameter, ``rows_empty`` / ``cols_empty`` count the rows / columns with no kept entry (an
empty column: an input that no unit of the matrix reads). Biases are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

#: the matrix whose empty rows are the class's dead units, and what a unit is
UNITS = {"src_embed": "words", "tgt_embed": "words", "attention": "h~ units", "softmax": "target words"}


def _lstm_rows(keep: Mapping[str, Tensor], names: Iterable[str]) -> Tensor | None:
    """Gate rows with any kept input or recurrent weight, (4H,) bool; None if not masked."""
    mats = [keep[n] for n in names if "weight" in n and n in keep]
    if not mats:
        return None
    alive = torch.zeros(mats[0].shape[0], dtype=torch.bool)
    for m in mats:
        alive |= m.any(dim=1).cpu()
    return alive


def dead_capacity(
    keep: Mapping[str, Tensor],
    classes: Mapping[str, Iterable[str]],
    tgt_counts: Tensor | None = None,
    input_counts: Mapping[str, Tensor] | None = None,
) -> dict:
    """Dead rows, columns and units of the masked 2-D parameters.

    ``keep``: keep-masks by parameter name (True = the weight survives); ``classes``: weight class
    -> parameter names (``Seq2Seq.weight_classes()``); ``tgt_counts``: (V,) occurrences of each
    target id among the training targets, for ``softmax_dead_token_share``; ``input_counts``:
    embedding class -> (V,) occurrences of each id among the tokens it embeds, for
    ``embed_dead_token_share``.

    Returns ``by_param`` {name: {rows, rows_empty, cols, cols_empty}}, ``by_class`` {class: {units,
    dead, total, fraction}}, ``attention_keys`` {units, dead, total, fraction, uniform} (when W_a
    is masked) and ``softmax_dead_token_share`` (when ``tgt_counts`` is given and the softmax
    layer is masked).
    """
    by_param = {}
    for name, k in keep.items():
        if k.dim() != 2:
            continue
        k = k.cpu()
        by_param[name] = {
            "rows": k.shape[0],
            "rows_empty": int((~k.any(dim=1)).sum()),
            "cols": k.shape[1],
            "cols_empty": int((~k.any(dim=0)).sum()),
        }
    by_class = {}
    out: dict = {"by_param": by_param, "by_class": by_class}
    for cls, names in classes.items():
        names = list(names)
        if cls.startswith(("encoder.", "decoder.")):
            alive = _lstm_rows(keep, names)
            if alive is not None:
                dead, total, units = int((~alive).sum()), alive.numel(), "gate units"
            else:
                continue
        else:
            rows = (
                "attn_out.weight" if cls == "attention" else next((n for n in names if "weight" in n), None)
            )
            if rows not in by_param:
                continue
            dead, total, units = by_param[rows]["rows_empty"], by_param[rows]["rows"], UNITS.get(cls, "rows")
        by_class[cls] = {"units": units, "dead": dead, "total": total, "fraction": dead / total}
    if "attn_in.weight" in by_param:
        keys = by_param["attn_in.weight"]
        dead, total = keys["rows_empty"], keys["rows"]
        out["attention_keys"] = {
            "units": "key units",
            "dead": dead,
            "total": total,
            "fraction": dead / total,
            "uniform": dead == total,
        }
    if tgt_counts is not None and "generator.weight" in keep:
        out["softmax_dead_token_share"] = _empty_row_share(keep["generator.weight"], tgt_counts)
    shares = {
        cls: _empty_row_share(keep[f"{cls}.weight"], counts)
        for cls, counts in (input_counts or {}).items()
        if f"{cls}.weight" in keep
    }
    if shares:
        out["embed_dead_token_share"] = shares
    return out


def _empty_row_share(keep: Tensor, counts: Tensor) -> float:
    """The share of the ``counts`` (V,) that fall on rows of ``keep`` (V, n) with no kept entry."""
    empty = ~keep.cpu().any(dim=1)
    counts = counts.to(torch.float64)
    return float(counts[empty].sum() / counts.sum())


def target_counts(targets: Iterable[list[int]], vocab_size: int, eos_id: int) -> Tensor:
    """(V,) counts of each id among the training targets, each sentence's </s> included: the
    tokens the softmax layer is trained to predict. With ``eos_id`` the <s> id instead: the
    tokens the target embedding reads (teacher forcing: <s> then the words)."""
    return token_counts(targets, vocab_size, per_sentence=eos_id)


def token_counts(seqs: Iterable[list[int]], vocab_size: int, per_sentence: int | None = None) -> Tensor:
    """(V,) counts of each id in ``seqs``, plus one ``per_sentence`` id for every sequence."""
    seqs = list(seqs)
    ids = torch.tensor([i for t in seqs for i in t], dtype=torch.long)
    counts = torch.bincount(ids, minlength=vocab_size)
    if per_sentence is not None:
        counts[per_sentence] += len(seqs)
    return counts


def dead_record(masks: Mapping[str, Tensor], model, train) -> dict:
    """results.json ``dead`` of a masked model (``Seq2Seq``) and its training split ``train``
    (``src`` id lists ending with </s>, ``tgt`` id lists of words): the softmax rows weighed by
    the training targets, the embedding rows by the tokens each embedding reads."""
    from nmt_prune.data.text import BOS_ID, EOS_ID

    n_src, n_tgt = model.src_embed.num_embeddings, model.tgt_embed.num_embeddings
    inputs = {
        "src_embed": token_counts(train.src, n_src),
        "tgt_embed": target_counts(train.tgt, n_tgt, BOS_ID),
    }
    return dead_capacity(masks, model.weight_classes(), target_counts(train.tgt, n_tgt, EOS_ID), inputs)
