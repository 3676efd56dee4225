"""Sweep report: every job's results.json under a directory -> a table and the seed study's figures.

    python -m nmt_prune.report multirun/2026-11-21/10-00-00     # or: make report SWEEP=...

Writes, into ``<sweep>/report/`` (``--out`` to change): ``results.csv`` and ``results.md`` (one row
per job, failed jobs listed with their error), ``medians.csv`` (per line and percentage: median and
range over seeds, paired differences with each seed's dense model; nmt_prune/report_medians.py,
also in results.md) and PNG figures, only those the sweep has data for
(a figure without data is skipped with a note in results.md, never a crash):

- ``bleu_vs_sparsity.png``: test BLEU vs sparsity, without and with retraining side by side, one
  line per method/scheme/... (median over seeds, band min-max; nmt_prune/report_sparsity.py);
- ``class_sparsity_pct<P>.png``: percentage pruned per weight class, per method/scheme, at P%;
- ``class_sensitivity.png``: change in perplexity when one class alone is pruned (``prune.only``);
- ``ppl_vs_magnitude.png``: that change vs the largest |w| removed from the class;
- ``masks_<group>.png``: encoder and decoder matrices, pruned positions in black;
- ``median_bleu_by_group.png``: median and range of test BLEU over seeds;
- ``snip_by_init.png``, ``snip_by_fraction.png``: pruning at init by initialisation, SNIP by the
  amount of data it scored on;
- ``dead_capacity.png``: rows and units left with no weight, per class (nmt_prune/report_dead.py);
- ``layer_error.png``, ``layer_error_vs_sensitivity.png``: the pruned layers' output error per
  class, and against the damage one class does alone (nmt_prune/report_dead.py);
- ``size.png``: test BLEU against nonzero parameters, dense widths vs a pruned large model
  (nmt_prune/report_size.py);
- ``retrain_curves.png``: val perplexity by retraining epoch (nmt_prune/report_curves.py).

When the jobs logged to W&B (``logger.name=wandb``) the figures and the table are logged to one
more run, ``report``, in the sweep's group (``--no-wandb`` to skip).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nmt_prune.report_figures import FIGURES
from nmt_prune.report_medians import distinct, medians_section, write_medians
from nmt_prune.report_read import COLUMNS, _fmt, collect, write_csv, write_markdown
from nmt_prune.results import get


def check_sweep(root: Path) -> None:
    """``FileNotFoundError`` naming SWEEP unless ``root`` is a directory with a results.json."""
    if not Path(root).is_dir():
        raise FileNotFoundError(f"SWEEP={root} is not a directory")
    if next(Path(root).rglob("results.json"), None) is None:
        raise FileNotFoundError(f"no results.json under {root}: not a sweep directory (or no job has run)")


def make_report(root: Path, out: Path | None = None, use_wandb: bool | None = None) -> dict[str, Any]:
    """Write the tables and figures of the sweep under ``root``; returns what was written."""
    root = Path(root)
    check_sweep(root)
    rows = collect(root)
    if not rows:
        raise FileNotFoundError(f"no results.json under {root}: not a sweep directory (or no job has run)")
    out = Path(out) if out else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures, notes = [], []
    unique = distinct(rows)  # a job two presets ran counts once in the figures' medians
    for fn in FIGURES:  # each returns the files it wrote (*.png) and notes on what it skipped
        for item in fn(unique, out):
            (figures if item.endswith(".png") else notes).append(item)
    write_csv(rows, out / "results.csv")
    recs = write_medians(rows, out)
    write_markdown(rows, out / "results.md", root, figures, notes, medians_section(recs))
    if use_wandb is None:
        use_wandb = any(get(r["_res"], "config", "logger", "name") == "wandb" for r in rows)
    if use_wandb:
        _log_wandb(rows, out, figures, root)
    return {
        "rows": len(rows),
        "failed": sum(r["status"] != "ok" for r in rows),
        "figures": figures,
        "notes": notes,
        "out": str(out),
    }


def _log_wandb(rows, out: Path, figures: list[str], root: Path) -> None:
    import wandb

    from nmt_prune.loggers import wandb_mode

    project = next(
        (get(r["_res"], "config", "logger", "project") for r in rows if r["_res"].get("config")), None
    )
    run = wandb.init(
        project=project or "nmt-prune",
        group=str(root),
        name="report",
        job_type="report",
        dir=str(out),
        mode=wandb_mode(),
    )
    try:
        run.log(
            {"results": wandb.Table(columns=COLUMNS, data=[[_fmt(r.get(c)) for c in COLUMNS] for r in rows])}
        )
        run.log({f.removesuffix(".png"): wandb.Image(str(out / f)) for f in figures})
    finally:
        run.finish()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="Tables and figures from a sweep directory of results.json files."
    )
    ap.add_argument("sweep", type=Path, help="a sweep directory (e.g. multirun/2026-11-21/10-00-00)")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: SWEEP/report)")
    ap.add_argument("--no-wandb", action="store_true", help="do not log the report to W&B")
    args = ap.parse_args(argv)
    try:
        check_sweep(args.sweep)
    except FileNotFoundError as e:  # a user's mistake: the message, not a traceback
        ap.exit(2, f"error: {e}\n")
    info = make_report(args.sweep, args.out, use_wandb=False if args.no_wandb else None)
    print(
        f"{info['rows']} jobs ({info['failed']} failed) -> {info['out']}: results.csv, results.md, "
        f"{len(info['figures'])} figures"
    )
    for n in info["notes"]:
        print(f"  skipped {n}")


if __name__ == "__main__":
    main()
