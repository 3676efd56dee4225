"""Report figure ``retrain_curves.png``: the validation perplexity of the retrained jobs by
retraining epoch, one line per group and sparsity (median over seeds), the dense model's as a
dotted line: whether a retraining had converged when it stopped (a curve still falling at its
last epoch ran into its cap), and which pruning step gives retraining the better start.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nmt_prune.report_plot import finish  # noqa: E402
from nmt_prune.report_read import _pruning_rows  # noqa: E402


def curves(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """``"<group> <pct>%"`` -> median val ppl over seeds per retraining epoch (the epochs every
    seed reached), for the after-fit jobs that retrained."""
    by: dict[str, list[list[float]]] = defaultdict(list)
    for r in _pruning_rows(rows):
        hist = [h.get("val_ppl") for h in r["_res"].get("history") or []]
        if r["timing"] == "after_fit" and hist and None not in hist:
            by[f"{r['group']} {r['pct']:g}%"].append(hist)
    return {
        k: [statistics.median(h[e] for h in hs) for e in range(min(map(len, hs)))] for k, hs in by.items()
    }


def fig_retrain_curves(rows: list[dict[str, Any]], out: Path) -> list[str]:
    lines = curves(rows)
    if not lines:
        return ["retrain_curves: no retrained after-fit jobs with a history"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, ys) in enumerate(sorted(lines.items())):
        ax.plot(range(len(ys)), ys, "osD^vP*"[i % 7] + "-", color=f"C{i % 10}", mfc="none", ms=4, label=name)
    by_seed = {r["seed"]: (r["_res"].get("dense") or {}).get("val_ppl") for r in _pruning_rows(rows)}
    dense = [d for d in by_seed.values() if d is not None]  # each seed's dense model once
    if dense:
        med = statistics.median(dense)
        ax.axhline(med, color="k", lw=0.8, ls=":", label=f"dense ({med:.2f}, median over seeds)")
    ax.set_yscale("log")
    title = "Retraining: validation perplexity by epoch (median over seeds)"
    finish(fig, ax, title, "retraining epoch", "val perplexity (log scale)", out / "retrain_curves.png")
    return ["retrain_curves.png"]
