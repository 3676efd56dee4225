"""The lines of a report: which jobs are seeds of one claim. A line is every setting that changes
results except the seed (``label``): method and scheme, then whatever else a job was run with
that the study's defaults lack. ``split_unlabelled`` is the safety net: jobs of one line that still
differ in any config key the label does not name are split by that key, so a median never mixes
two recipes (the SGD jobs once counted as repeats of the Adam jobs' seed 1).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from nmt_prune.criteria import REGISTRY
from nmt_prune.names import CONVERGENCE_RULES, SCHEDULES, TRAINER_COSMETIC

_CONF = Path(__file__).resolve().parents[1] / "conf"


def _conf(name: str) -> dict[str, Any]:
    return yaml.safe_load((_CONF / name).read_text())


_PRUNE_DEFAULTS = _conf("prune/default.yaml")
#: the retraining LR factor a line is labelled with only when it differs (conf/prune/default.yaml)
DEFAULT_LR_FACTOR = _PRUNE_DEFAULTS["retrain"]["lr_factor"]
#: OBD's Hessian sample, likewise: a line on another amount (the whole training set) is its own
DEFAULT_OBD_SENTENCES = _PRUNE_DEFAULTS["obd"]["sentences"]
#: the model a line is labelled with only when it differs: its width (``model.hidden_size``)
DEFAULT_WIDTH = _conf("model/small.yaml")["hidden_size"]
#: the training recipe, likewise: the optimizer of conf/config.yaml's defaults (its class name,
#: ``Adam``) and ``loss.normalize`` (``token``); See et al.'s SGD recipe is a line of its own
_CONFIG = _conf("config.yaml")
_DEFAULTS = {k: v for d in _CONFIG["defaults"] if isinstance(d, dict) for k, v in d.items()}
DEFAULT_OPTIMIZER = _conf(f"optim/{_DEFAULTS['optim']}.yaml")["_target_"].rsplit(".", 1)[-1]
DEFAULT_LOSS_NORMALIZE = _CONFIG["loss"]["normalize"]
#: the initialisation, likewise (``init``: See et al.'s U(-0.1, 0.1))
DEFAULT_INIT = _conf(f"init/{_DEFAULTS['init']}.yaml")["scheme"]
#: what SNIP scores on by default (report_read._snip_data of conf/prune/default.yaml's snip node)
DEFAULT_SNIP_DATA = f"{_PRUNE_DEFAULTS['snip']['batches']} batches"
#: trainer.precision values that are Lightning's fp32 default (a line says any other)
FP32 = ("", None, 32, "32", "32-true")

#: config keys the jobs of one line may differ in: the seed, the line's x axis, where and how a job
#: ran (threads change no result: tests/test_runtime.py; a resumed job computes the same fit)
SAME_LINE_KEYS = (
    "seed",
    "prune.seed",  # the random criterion's own seed: repeats of one claim as much as the run's seed
    "prune.pct",
    "threads",
    "lend_threads",
    "keep_freed_memory",
    "resume",
    "data.root",
    "data.download",
    "ckpt_path",
    *(f"trainer.{k}" for k in TRAINER_COSMETIC),
)
SAME_LINE_PREFIXES = ("paths.", "logger.", "hydra.", "wandb.")


def _flat(d: dict[str, Any], pre: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{pre}{k}.") if isinstance(v, dict) else {f"{pre}{k}": str(v)})
    return out


def _may_differ(key: str, rows: list[dict[str, Any]]) -> bool:
    """Whether the jobs of one line may differ in ``key``: the SAME_LINE keys; another criterion's
    settings; a cap the convergence rule decides below (a larger cap computes the same fit:
    resume.py extends a fit that stopped at one)."""
    if key in SAME_LINE_KEYS or key.startswith(SAME_LINE_PREFIXES):
        return True
    methods = {r["method"] for r in rows}
    if any(
        key.startswith(f"prune.{rec.settings}.")
        for m, rec in REGISTRY.items()
        if rec.settings and m not in methods
    ):
        return True
    schedules = {r["schedule"] for r in rows}
    if any(key.startswith(f"prune.{s}.") for s in SCHEDULES if s not in schedules):
        return True  # another schedule's settings
    cfgs = [r["_res"].get("config") or {} for r in rows]
    if key.startswith("prune.rpp."):  # the sparsifying phase's settings, where none ran
        return all(not ((c.get("prune") or {}).get("rpp") or {}).get("epochs") for c in cfgs)
    if key == "trainer.max_epochs":
        return all((c.get("lr_schedule") or {}).get("name") in CONVERGENCE_RULES for c in cfgs)
    if key == "prune.retrain.epochs":
        return all(((c.get("prune") or {}).get("retrain") or {}).get("until") == "converged" for c in cfgs)
    return False


def split_unlabelled(rows: list[dict[str, Any]]) -> None:
    """Jobs of one line that differ in a config key no label names become lines of their own,
    labelled ``key=value``. Keys some of them lack (results from before an option existed) do not
    count."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["_res"].get("config"):
            by[r["group"]].append(r)
    for rs in by.values():
        flats = [_flat(r["_res"]["config"]) for r in rs]
        common = set.intersection(*(set(f) for f in flats))
        differ = sorted(k for k in common if len({f[k] for f in flats}) > 1 and not _may_differ(k, rs))
        if not differ:
            continue
        for r, f in zip(rs, flats):
            r["_split"] = [f"{k}={f[k]}" for k in differ]
            r["group"] = label(r)


def name_widths(rows: list[dict[str, Any]]) -> None:
    """Where the rows hold models of several widths (study_size_dense), a job of another width than
    the study's model (``conf/model/small.yaml``) is a line of its own: ``dense/width 128`` is not
    another seed of ``dense``. A report of one width is labelled as before."""
    if len({r["width"] for r in rows} - {"", None}) > 1:
        for r in rows:
            if r["width"] not in ("", None, DEFAULT_WIDTH):
                r["_width"] = True
                r["group"] = label(r)


def retrain_budget(r: dict[str, Any]) -> str:
    """A retrained job's retraining budget (``converged``, ``6 ep``); "" where none applies."""
    if r["status"] != "ok" or r.get("timing") != "after_fit" or r.get("rewind") not in ("none", ""):
        return ""
    epochs = r.get("retrain_epochs")
    if epochs == 0:  # not retrained, whatever `until` its preset inherited
        return ""
    if r.get("retrain_until") == "converged":
        return "converged"
    return f"{epochs} ep" if epochs not in ("", None) else ""


def name_budgets(rows: list[dict[str, Any]]) -> None:
    """Jobs that differ only in their retraining budget (study_schedules' 6 fixed epochs beside
    study_oneshot's converged retraining) must not be one line, or the medians would take a
    6-epoch job for another seed of the converged one. Where a line holds several budgets, every
    fixed budget becomes part of the label (``magnitude/uniform/retrain 6 ep``); the converged
    jobs keep the plain label, so a report of one budget is labelled as before."""
    budgets: dict[str, set[str]] = {}
    for r in rows:
        if retrain_budget(r):
            budgets.setdefault(r["group"], set()).add(retrain_budget(r))
    for r in rows:
        b = retrain_budget(r)
        if b and b != "converged" and len(budgets[r["group"]]) > 1:
            r["_budget"] = f"retrain {b}"
            r["group"] = label(r)


# --------------------------------------------------------------------------------- tables
def label(r: dict[str, Any]) -> str:
    """The line a job belongs to: method/scheme plus whatever else distinguishes it."""
    model = []  # another width, precision or training recipe than the study's: a line of its own
    if r.get("_width"):
        model.append(f"width {r['width']}")
    if r.get("precision") not in FP32:
        model.append(str(r["precision"]))
    if r.get("optimizer") not in ("", None, DEFAULT_OPTIMIZER):  # another training recipe
        model.append(f"optim={r['optimizer']}")
    if r.get("loss_normalize") not in ("", None, DEFAULT_LOSS_NORMALIZE):
        model.append(f"loss={r['loss_normalize']}")
    if r["method"] in ("dense", "dense control"):
        return "/".join([r["method"], *model, *r.get("_split", [])])
    parts = [str(r["method"]), str(r["scheme"]), *model]
    if r.get("timing") in ("at_init", "during"):
        parts.append(r["timing"])
    if r.get("schedule") not in ("", "one_shot", None):
        parts.append(r["schedule"])
    if r.get("init") not in ("", None, DEFAULT_INIT):
        parts.append(f"init={r['init']}")
    if r.get("snip_data") not in ("", None, DEFAULT_SNIP_DATA):
        parts.append(f"scored on {r['snip_data']}")
    if r.get("rewind") not in ("", "none", None):
        parts.append(f"rewind={r['rewind']}")
    if r.get("phase"):
        parts.append(r["phase"])
    if r["method"] == "obd" and r.get("data_sentences") not in ("", None, DEFAULT_OBD_SENTENCES):
        parts.append(f"H on {r['data_sentences']} sentences")
    if r.get("lr_factor") not in ("", None, DEFAULT_LR_FACTOR) and r.get("retrain_epochs") not in ("", 0):
        parts.append(f"retrain lr x{r['lr_factor']:g}")
    if r.get("_budget"):
        parts.append(r["_budget"])
    if r.get("only"):
        parts.append(f"only={r['only']}")
    elif r.get("timing") == "after_fit" and r.get("retrain_epochs") == 0:
        parts.append("no retraining")  # a line of its own, not mixed with the retrained jobs
    return "/".join(parts + r.get("_split", []))
