"""Report figure ``schemes_by_recipe.png``: magnitude pruning without retraining, test BLEU against
sparsity for each allocation scheme, one panel per training recipe of the dense model it pruned
(the optimizer and ``loss.normalize``: Adam on the per-token loss, See et al.'s SGD on the
sentence-normalised one). See et al. 2016 Fig. 5 is this figure for their SGD recipe; whether
class-blind collapses or leads depends on how the recipe sets each class's weight magnitudes
(docs/study.md, finding 11). Median over seeds, band min-max, each recipe's dense median dotted.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nmt_prune.names import SCHEMES  # noqa: E402
from nmt_prune.report_read import _pruning_rows  # noqa: E402


def recipe(r: dict[str, Any]) -> str:
    """The dense model's training recipe, as a panel title: ``Adam, token loss``."""
    return f"{r.get('optimizer') or '?'}, {r.get('loss_normalize') or '?'} loss"


def scheme_curves(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[float, list[float]]]]:
    """recipe -> scheme -> pct -> test BLEU of every seed, for one-shot magnitude pruning of every
    class after the fit, without retraining."""
    out: dict[str, dict[str, dict[float, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in _pruning_rows(rows):
        plain = r["method"] == "magnitude" and r["timing"] == "after_fit" and r["schedule"] == "one_shot"
        if plain and r["retrain_epochs"] == 0 and not r["only"] and not r["phase"] and r["scheme"] in SCHEMES:
            out[recipe(r)][r["scheme"]][r["pct"]].append(r["test_bleu"])
    return out


def fig_schemes_by_recipe(rows: list[dict[str, Any]], out: Path) -> list[str]:
    curves = scheme_curves(rows)
    if len(curves) < 2:
        return ["schemes_by_recipe: no-retraining magnitude jobs from fewer than 2 training recipes"]
    names = sorted(curves)
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.3), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        for i, scheme in enumerate(s for s in SCHEMES if s in curves[name]):
            pts = sorted(curves[name][scheme].items())
            xs = [p for p, _ in pts]
            ax.plot(
                xs,
                [statistics.median(v) for _, v in pts],
                "osD"[i] + "-",
                color=f"C{i}",
                mfc="none",
                label=scheme,
            )
            ax.fill_between(xs, [min(v) for _, v in pts], [max(v) for _, v in pts], color=f"C{i}", alpha=0.15)
        dense = {
            r["seed"]: r["dense_test_bleu"]
            for r in _pruning_rows(rows)
            if recipe(r) == name and isinstance(r.get("dense_test_bleu"), (int, float))
        }
        if dense:
            med = statistics.median(dense.values())
            ax.axhline(med, color="k", lw=0.8, ls=":", label=f"dense ({med:.2f})")
        seeds = {len(v) for s in curves[name].values() for v in s.values()}
        ax.set_title(f"dense trained with {name} ({'/'.join(map(str, sorted(seeds)))} seed(s))", fontsize=10)
        ax.set_xlabel("sparsity (% of prunable weights pruned)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("test BLEU, no retraining")
    fig.suptitle("Allocation schemes without retraining, by the dense model's training recipe")
    fig.tight_layout()
    fig.savefig(out / "schemes_by_recipe.png", dpi=110)
    plt.close(fig)
    return ["schemes_by_recipe.png"]
