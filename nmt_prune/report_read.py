"""A sweep's results.json files read into rows (one per job) and written as results.csv / results.md."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nmt_prune.report_lines import FP32, label, name_budgets, name_widths, retrain_budget, split_unlabelled
from nmt_prune.results import PATH_COLUMNS, get, path_values

_label = label  # the name the figures import
__all__ = ["FP32", "retrain_budget", "_label"]

#: the csv's columns: what the report computes per job, then the values read from results.json
COLUMNS = [
    "job",
    "status",
    "error",
    "group",
    "method",
    "scheme",
    "pct",
    "timing",
    "schedule",
    "rewind",
    "retrain_epochs",
    "retrain_until",
    "only",
    "init",
    "seed",
    "snip_data",
    "phase",
    "lr_factor",
    "width",
    "precision",
    "optimizer",
    "loss_normalize",
    *PATH_COLUMNS,
]


#: columns of the markdown table (the csv has all)
MD_COLUMNS = [
    "group",
    "pct",
    "seed",
    "init",
    "sparsity",
    "pruned_test_bleu",
    "test_bleu",
    "test_bleu_lc",
    "pruned_test_ppl",
    "test_ppl",
    "dense_test_bleu",
    "retrain_s",
    "job",
]


# --------------------------------------------------------------------------------- reading


def _overrides_dict(overrides: Iterable[str]) -> dict[str, str]:
    out = {}
    for o in overrides or []:
        if "=" in o:
            k, v = o.split("=", 1)
            out[k.lstrip("+~")] = v
    return out


def _snip_data(s: dict[str, Any]) -> str:
    """What a SNIP job scored on: ``0.25`` (a fraction of the training set) or ``8 batches`` (an
    integer ``fraction`` in results from before the key was split meant batches too)."""
    f = s.get("fraction")
    if isinstance(f, float):
        return f"{f:g}"
    return f"{f if f is not None else s.get('batches', 1)} batches"


def _phase(p: dict[str, Any]) -> str:
    """A sparsifying phase before the pruning (nmt_prune/rpp.py): ``rpp lam=0.02``, ``l1 lam=1e-05``."""
    r = p.get("rpp") or {}
    if not r.get("epochs"):
        return ""
    name = "l1" if r.get("penalty") == "l1" else "rpp"
    return f"{name} lam={r.get('lam'):g} x{r['epochs']}ep"


def _row(job: str, res: dict[str, Any]) -> dict[str, Any]:
    cfg = res.get("config") or {}
    ov = _overrides_dict(res.get("overrides", []))
    p = res.get("prune") or cfg.get("prune") or {}
    pct = p.get("pct", ov.get("prune.pct", 0))
    dense_job = res.get("status") == "ok" and res.get("prune") is None
    row = {
        "job": job,
        "status": res.get("status", "unknown"),
        "error": res.get("error", ""),
        "method": "dense" if dense_job else p.get("method", ov.get("prune.method", "")),
        "scheme": "" if dense_job else p.get("scheme", ov.get("prune.scheme", "")),
        "pct": float(pct) if str(pct).replace(".", "", 1).isdigit() else pct,
        "timing": p.get("timing", ""),
        "schedule": p.get("schedule", "one_shot") if not dense_job else "",
        "rewind": p.get("rewind", "none") if not dense_job else "",
        "retrain_epochs": get(p, "retrain", "epochs", default=""),
        "retrain_until": get(p, "retrain", "until", default="") if not dense_job else "",
        "only": p.get("only") or "",
        "init": get(cfg, "init", "scheme", default=ov.get("init", "")),
        "seed": cfg.get("seed", ov.get("seed", "")),
        "snip_data": _snip_data(p.get("snip") or {}) if p.get("method") == "snip" else "",
        "phase": _phase(get(cfg, "prune", default={}) or {}),
        "lr_factor": get(cfg, "prune", "retrain", "lr_factor", default=""),
        "width": get(cfg, "model", "hidden_size", default=""),
        "precision": get(cfg, "trainer", "precision", default=""),
        "optimizer": str(get(cfg, "optim", "_target_", default="")).rsplit(".", 1)[-1],
        # results from before loss.normalize existed trained on the per-token loss
        "loss_normalize": get(cfg, "loss", "normalize", default="token" if cfg else ""),
        **path_values(res),
    }
    if not dense_job and row["pct"] == 0 and res.get("prune") is not None:
        row["method"], row["scheme"] = "dense control", ""  # the baseline retrained, nothing pruned
    row["group"] = _label(row)
    row["_res"] = res
    return row


def _pruning_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished pruning jobs (not dense, not a one-class sensitivity job)."""
    return [r for r in rows if r["status"] == "ok" and r["method"] != "dense" and not r["only"]]


def collect(root: Path) -> list[dict[str, Any]]:
    """One row per job under ``root`` (any depth): each results.json, and each Hydra job directory
    (``.hydra/``) without one, as a failed job (killed before it could write)."""
    rows, seen = [], set()
    for f in sorted(root.rglob("results.json")):
        if "report" in f.relative_to(root).parts[:1]:
            continue
        try:
            res = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            res = {"status": "failed", "error": f"unreadable results.json: {e}"}
        job = str(f.parent.relative_to(root)) or "."
        rows.append(_row(job, res))
        seen.add(f.parent)
    for h in sorted(root.rglob(".hydra")):
        if h.parent not in seen and (h / "overrides.yaml").exists():
            ov = [
                ln[2:].strip()
                for ln in (h / "overrides.yaml").read_text().splitlines()
                if ln.startswith("- ")
            ]
            res = {"status": "failed", "error": "no results.json (the job was killed?)", "overrides": ov}
            rows.append(_row(str(h.parent.relative_to(root)) or ".", res))
    name_budgets(rows)
    name_widths(rows)
    split_unlabelled(rows)
    return rows


def _fmt(v: Any, column: str = "") -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if column == "sparsity":
            return f"{v:.4f}"
        return f"{v:g}" if column == "pct" else f"{v:.2f}"
    return str(v)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in COLUMNS})


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c), c).replace("|", "/") for c in columns) + " |")
    return "\n".join(lines)


def write_markdown(
    rows, path: Path, root: Path, figures: list[str], notes: list[str], extra: list[str] = ()
) -> None:
    """``extra``: more sections (lines), after the jobs' table."""
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    parts = [f"# Sweep report: {root}", "", f"{len(rows)} jobs: {len(ok)} ok, {len(failed)} failed.", ""]
    parts += [
        "BLEU: sacreBLEU, cased, detokenised (`test_bleu_lc`: lowercased); `pruned_*`: after pruning, "
        "before retraining; `dense_*`: the dense model the job pruned; times in seconds.",
        "",
    ]
    parts += [markdown_table(sorted(ok, key=_sort_key), MD_COLUMNS), ""]
    if failed:
        parts += ["## Failed jobs", "", markdown_table(failed, ["job", "status", "error"]), ""]
    parts += list(extra)
    parts += ["## Figures", ""] + [f"- `{f}`" for f in figures]
    if notes:
        parts += ["", "Skipped:", ""] + [f"- {n}" for n in notes]
    path.write_text("\n".join(parts) + "\n")


def _sort_key(r: dict[str, Any]) -> tuple:
    return (_label(r), r["pct"] if isinstance(r["pct"], (int, float)) else -1, str(r["seed"]), r["job"])
