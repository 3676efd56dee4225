"""``bleu_vs_sparsity.png``: test BLEU against sparsity in two panels, without and with retraining.

One line per method/scheme/... (``report_read._label``; the "no retraining" of a label is the
panel, not part of the line's name, so a line keeps its colour in both panels): the median over
seeds at each percentage, and a band from the lowest to the highest seed where a percentage has
more than one. Left: jobs evaluated right after pruning (``prune.retrain.epochs=0``), and the
pruned-before-retraining figures of retrained jobs whose line has no such job of its own. Right:
every job whose model trained after (or while) it was pruned. The dotted line: the dense models'
median test BLEU (one value per seed).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nmt_prune.report_read import _pruning_rows  # noqa: E402

NO_RETRAINING = "/no retraining"


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not math.isnan(v) else None


def _retrained(r: dict) -> bool:
    return r["timing"] in ("at_init", "during") or r["retrain_epochs"] not in ("", 0)


def panels(rows: list[dict]) -> dict[str, dict[str, dict[float, list[float]]]]:
    """``{"no retraining" | "retrained": {line: {pct: [test BLEU per job]}}}``."""
    out: dict[str, dict[str, dict[float, list[float]]]] = {"no retraining": {}, "retrained": {}}
    before: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in _pruning_rows(rows):
        line = r["group"].removesuffix(NO_RETRAINING)
        side = "retrained" if _retrained(r) else "no retraining"
        bleu = _num(r["test_bleu"])
        if bleu is not None:
            out[side].setdefault(line, defaultdict(list))[r["pct"]].append(bleu)
        pruned = _num(r.get("pruned_test_bleu"))
        if side == "retrained" and r["timing"] == "after_fit" and pruned is not None:
            before[line][r["pct"]].append(pruned)
    for line, by_pct in before.items():  # the retrained jobs' own before-retraining figures
        out["no retraining"].setdefault(line, by_pct)
    return out


def fig_bleu_vs_sparsity(rows, out: Path) -> list[str]:
    data = panels(rows)
    if not any(data.values()):
        return ["bleu_vs_sparsity: no pruning jobs"]
    lines = sorted({line for side in data.values() for line in side})
    colors = plt.get_cmap("tab20").colors  # 20 colours; markers cycle on their own: no two alike
    style = {line: (colors[i % 20], "osD^vP*X<>"[(i + i // 20) % 10]) for i, line in enumerate(lines)}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    by_seed = {r["seed"]: _num(r["dense_test_bleu"]) for r in _pruning_rows(rows)}  # one per dense model
    dense = [d for d in by_seed.values() if d is not None]
    for ax, (side, by_line) in zip(axes, data.items()):
        for line, by_pct in sorted(by_line.items()):
            color, marker = style[line]
            pcts = sorted(by_pct)
            ax.plot(pcts, [statistics.median(by_pct[p]) for p in pcts], marker + "-", color=color, mfc="none")
            if any(len(by_pct[p]) > 1 for p in pcts):
                lo, hi = [min(by_pct[p]) for p in pcts], [max(by_pct[p]) for p in pcts]
                ax.fill_between(pcts, lo, hi, color=color, alpha=0.15, lw=0)
        if dense:
            ax.axhline(statistics.median(dense), color="k", lw=0.8, ls=":")
        ax.set_title(f"{side}: median over seeds (band: min-max)")
        ax.set_xlabel("sparsity (% of prunable weights pruned)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test BLEU (sacreBLEU)")
    handles = [plt.Line2D([], [], color=c, marker=m, mfc="none", label=k) for k, (c, m) in style.items()]
    if dense:
        label = f"dense ({statistics.median(dense):.2f})"
        handles.append(plt.Line2D([], [], color="k", lw=0.8, ls=":", label=label))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle("Test BLEU vs sparsity")
    fig.tight_layout()
    fig.savefig(out / "bleu_vs_sparsity.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return ["bleu_vs_sparsity.png"]
