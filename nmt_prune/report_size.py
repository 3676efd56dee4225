"""Report figure ``size.png``: prune large or train small? (Zhu & Gupta 2017): test BLEU against
the number of nonzero parameters (biases included), one line per family: the dense models of
each width (``study_size_dense``; the pruned jobs' own dense baseline adds its width), and each
pruned family (a width and a report line pruned to several counts, ``study_size_pruned``). Medians
over seeds. Drawn when the rows hold models of at least two widths.

A family is a report line (``report_read``: method, scheme, and whatever else distinguishes a
job but its seed) at one width. Lines without retraining are not drawn; where the rows hold
converged retrainings, fixed retraining budgets are not drawn either: the study's dense widths are
trained to convergence, and its no-retraining and 6-epoch jobs of the same method and scheme would
otherwise crowd the figure with lines that answer another question.
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
from nmt_prune.report_read import FP32, retrain_budget  # noqa: E402
from nmt_prune.results import get as _get  # noqa: E402


def size_points(rows: list[dict[str, Any]]) -> dict[str, dict[int, list[float]]]:
    """family -> nonzero parameters -> test BLEUs (one per job/seed)."""
    fam: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    # (parameters, the dense model) -> its test BLEU: each dense model the pruned jobs started from
    # counted once; a model is its cache key where recorded (one seed trained by two code versions
    # is two models), else its seed
    baselines: dict[tuple[int, Any], float] = {}
    budgets = {retrain_budget(r) for r in rows if r["status"] == "ok"} - {""}
    if "converged" in budgets:
        budgets = {"converged"}
    for r in rows:
        res = r["_res"]
        nonzero, width = _get(res, "params", "nonzero"), _get(res, "config", "model", "hidden_size")
        if r["status"] != "ok" or r["test_bleu"] is None or nonzero is None or r["only"]:
            continue
        if r["precision"] not in FP32:  # the figure compares fp32 models (study_bf16 is not a width)
            continue
        if r["method"] == "dense":
            fam["dense"][nonzero].append(r["test_bleu"])
            continue
        if r["method"] == "dense control" or retrain_budget(r) not in budgets:  # budgets lacks ""
            continue
        fam[f"{width} pruned, {r['group']}"][nonzero].append(r["test_bleu"])
        total, dense_bleu = _get(res, "params", "total"), _get(res, "dense", "test_bleu")
        if total is not None and dense_bleu is not None:
            baselines[(total, _get(res, "dense", "cache_key") or r["seed"])] = dense_bleu
    for (total, _), bleu in baselines.items():
        fam["dense"][total].append(bleu)
    return fam


def fig_size(rows: list[dict[str, Any]], out: Path) -> list[str]:
    widths = {_get(r["_res"], "config", "model", "hidden_size") for r in rows if r["status"] == "ok"}
    if len(widths - {None}) < 2:
        return ["size: models of one width only (study_size_dense and study_size_pruned draw it)"]
    fam = size_points(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, pts) in enumerate(sorted(fam.items())):
        xs = sorted(pts)
        ys = [statistics.median(pts[x]) for x in xs]
        style = "ko-" if name == "dense" else "osD^v"[i % 5] + "-"
        ax.plot(xs, ys, style, mfc="none", label=f"{name} (median over seeds)")
    ax.set_xscale("log")
    title = "Prune large or train small: test BLEU at equal nonzero parameters"
    xlabel = "nonzero parameters (biases included, log scale)"
    finish(fig, ax, title, xlabel, "test BLEU (sacreBLEU)", out / "size.png")
    return ["size.png"]
