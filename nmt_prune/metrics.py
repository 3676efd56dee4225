"""BLEU with sacrebleu: the standard cased score, and lowercased variants for older papers."""

from __future__ import annotations

from sacrebleu.metrics import BLEU


def bleu_scores(hyps: list[str], refs: list[str], tokenize_fn=None) -> dict:
    """Corpus BLEU of detokenised ``hyps`` against raw ``refs`` (one reference each).

    Returns ``bleu`` (cased, sacrebleu default 13a tokenisation: the number to report),
    ``bleu_lc`` (same, lowercased), ``signature`` (of the cased score), and, if ``tokenize_fn``
    (text -> tokens) is given, ``bleu_tok_lc``: lowercased BLEU on the project's own tokenisation
    with sacrebleu's tokeniser off, as multi-bleu.perl on tokenised text in older papers.
    All scores are 0..100.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    cased = BLEU()
    out = {
        "bleu": cased.corpus_score(hyps, [refs]).score,
        "bleu_lc": BLEU(lowercase=True).corpus_score(hyps, [refs]).score,
        "signature": str(cased.get_signature()),
    }
    if tokenize_fn is not None:
        tok = [" ".join(tokenize_fn(x)) for x in hyps], [" ".join(tokenize_fn(x)) for x in refs]
        out["bleu_tok_lc"] = (
            BLEU(lowercase=True, tokenize="none", force=True).corpus_score(tok[0], [tok[1]]).score
        )
    return out
