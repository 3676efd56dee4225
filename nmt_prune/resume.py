"""Resumable studies: what a job finds in its output directory from an earlier attempt.

A multirun re-run into the same sweep directory (``hydra.sweep.dir=...``) meets each job's
earlier ``results.json``. With ``resume=true`` (the default):

- ``status: ok`` for the same config: the job is skipped, its results stand;
- ``running`` (the process was killed) or ``interrupted`` (SIGTERM, Ctrl-C) for the same config,
  with a ``checkpoints/last.ckpt``: the job resumes from that checkpoint;
- a larger cap, the only difference (``prune.retrain.epochs`` of a one-shot prune-after-fit
  job; ``trainer.max_epochs`` of a dense job): the earlier
  fit is a prefix of the longer one (the cap only stops it), so if it
  stopped at its cap (``training.stop_reason: max_epochs``) or was killed, the job continues from
  its ``last.ckpt`` to the new cap (``extend``); if its rule stopped it before the cap, a larger
  cap computes the same fit and the job is skipped, its results standing;
- anything else (failed, another config, no checkpoint): the job runs again from the start. The
  earlier attempt is not deleted: its results.json, checkpoints, CSV log and hypotheses move to
  ``superseded-<time>/`` in the job's directory (the report and ``study save`` read only
  ``results.json``, so it is neither counted nor saved), and the log says which keys differ.

Keys renamed since a job ran are compared in their current spelling (``SPELLINGS``): a finished
job of a study is the same job after a rename.

A resumed job's CSV log (``csv/metrics.csv``) continues the earlier attempts' rows: Lightning's
CSV logger would start the file over, so the earlier rows are kept aside (``stash_csv``) and put
back in front of the new ones when the job ends (``merge_csv``), killed again or not.

"The same config" ignores the keys that say where or how fast a job runs (``VOLATILE``, the
progress bar, ``data.root``: the keys Hydra leaves out of job directory names too), and keys the
earlier attempt's config does not have at all: options added to ``conf/`` after it ran, whose
defaults by this project's rule reproduce the behaviour from before they existed (a new option
must not change the numbers of a config that does not set it), unless the job's own overrides
set them. So adding an option does not make every finished job of a study run again.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from nmt_prune.criteria import snip_spelling

log = logging.getLogger(__name__)

#: top-level config keys that change where or how fast a job runs, not what it computes
VOLATILE = ("threads", "lend_threads", "keep_freed_memory", "paths", "logger", "resume", "ckpt_path")
#: statuses of an attempt that ended before its end (killed: still "running")
UNFINISHED = ("running", "interrupted")


#: config nodes whose keys were renamed, and the function that writes a node in the current spelling
SPELLINGS = ((("prune", "snip"), snip_spelling),)


def comparable(config: dict[str, Any] | None) -> dict[str, Any]:
    """The parts of a results.json ``config`` that decide what the job computes, in the current
    spelling."""
    config = dict(config or {})
    for path, spell in SPELLINGS:
        node = get(config, path)
        if isinstance(node, dict):
            config = _with(config, path, spell(node))
    for k in VOLATILE:
        config.pop(k, None)
    trainer = dict(config.get("trainer") or {})
    trainer.pop("enable_progress_bar", None)
    data = dict(config.get("data") or {})
    for k in ("root", "download"):  # where the corpus is read from (job dirs are named without it too)
        data.pop(k, None)
    config["trainer"], config["data"] = trainer, data
    return config


def previous(out: Path) -> dict[str, Any] | None:
    """The earlier attempt's results.json in ``out``, or None (none, or unreadable)."""
    f = out / "results.json"
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        log.warning("%s is unreadable (%s): the job runs again", f, e)
        return None


def loadable(path: Path, then: str = "the job starts over") -> bool:
    """Whether torch can load ``path``; if not, a warning saying so and what happens ``then``."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception as e:  # a file cut short by a kill: say so, start over
        log.warning("%s cannot be loaded (%s: %s): %s", path, type(e).__name__, e, then)
        return False


def _without_new_keys(new: Any, old: Any, overridden: set[str], prefix: str = "") -> Any:
    """``new`` without the keys ``old`` lacks (recursively), except those in ``overridden``."""
    if not isinstance(new, dict) or not isinstance(old, dict):
        return new
    return {
        k: _without_new_keys(v, old.get(k), overridden, f"{prefix}{k}.")
        for k, v in new.items()
        if k in old or f"{prefix}{k}" in overridden
    }


def _overridden(overrides: list[str]) -> set[str]:
    """The keys a job's overrides set (``a.b=1``, ``+a.b=1``, ``~a.b``), with their parents."""
    keys = set()
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        parts = key.split(".")
        keys.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return keys


#: the key that only caps a fit, by the job's timing: a one-shot prune-after-fit job's retraining
#: (``schedules.fit_epochs``) and a dense job's training (timing None: nothing pruned)
CAPS: dict[str | None, tuple[str, ...]] = {
    "after_fit": ("prune", "retrain", "epochs"),
    None: ("trainer", "max_epochs"),
}
#: what an extended job keeps from the earlier attempt: measured at pruning time, which a resumed
#: fit does not repeat (the same masks on the same dense model)
CARRIED = ("layer_error", "rpp")


def get(config: dict[str, Any], path: tuple[str, ...]) -> Any:
    for k in path:
        config = config.get(k) if isinstance(config, dict) else None
    return config


def _with(config: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``config`` with ``path`` set to ``value`` (the dicts along it copied)."""
    out = dict(config)
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = _with(dict(out.get(path[0]) or {}), path[1:], value)
    return out


def larger_cap(old: dict[str, Any], new: dict[str, Any], timing: str | None) -> bool:
    """``new`` is ``old`` with only a larger cap (``CAPS[timing]``), for a fit capped by it alone
    (no LR schedule depends on the cap, module.configure_optimizers): a dense job, or a one-shot
    prune-after-fit job without rewind."""
    if timing not in CAPS:
        return False
    key = CAPS[timing]
    before, after = get(old, key), get(new, key)
    prune = old.get("prune") or {}
    one_shot = prune.get("schedule") == "one_shot" and prune.get("rewind") == "none"
    return (
        isinstance(before, int)
        and isinstance(after, int)
        and after > before
        and (timing is None or one_shot)
        and _with(new, key, before) == old
    )


def decide(
    out: Path,
    config: dict[str, Any],
    overrides: list[str] | None = None,
    timing: str | None = None,
    dry: bool = False,
) -> tuple[str, dict[str, Any] | None, str | None]:
    """What to do with ``out``: ``("skip", earlier results, None)``, ``("resume", None, last.ckpt)``,
    ``("extend", earlier results, last.ckpt)`` (a larger cap, see the module docstring)
    or ``("run", None, None)`` (an earlier attempt moved aside). ``overrides``: the job's (keys they
    set are compared even where the earlier config lacks them); ``timing``: the job's resolved
    timing (None: a dense job; ``CAPS`` says which cap each timing can extend). ``dry``: change nothing
    (``study plan``); a run over an earlier attempt then returns ``("run", earlier results, why)``."""
    prev = previous(out)
    if prev is None:
        return "run", None, None
    old = comparable(prev.get("config"))
    new = _without_new_keys(comparable(config), old, _overridden(overrides or []))
    same = old == new
    status = prev.get("status")
    longer = larger_cap(old, new, timing)
    stop = (prev.get("training") or {}).get("stop_reason")
    if status == "ok" and (same or (longer and stop not in (None, "max_epochs"))):
        return "skip", prev, None  # a rule that stopped the fit before the cap stops it there again
    last = out / "checkpoints" / "last.ckpt"
    if (same or longer) and status in (*UNFINISHED, "ok") and last.is_file() and loadable(last):
        if not same:
            return "extend", prev, str(last)
        if status in UNFINISHED:
            return "resume", None, str(last)
    why = f"status {status}" if same else f"another config: {', '.join(differences(old, new)) or '?'}"
    if dry:
        return "run", prev, why
    supersede(out, why)
    return "run", None, None


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for each leaf where two configs differ."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]
    out = []
    for k in sorted(set(old) | set(new), key=str):
        out += differences(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}.")
    return out


#: what an attempt leaves in its job directory that the next run would overwrite
#: (theta0.pt too: a run keeps the theta_0 it finds, training.fit_dense, which must be its own)
ATTEMPT = ("results.json", "checkpoints", "csv", "hypotheses.test.txt", "theta0.pt")


def supersede(out: Path, why: str) -> Path | None:
    """Move the earlier attempt's files (``ATTEMPT``) to ``out/superseded-<time>/``, its
    results.json renamed ``results.superseded.json``; nothing already computed is deleted."""
    here = [out / name for name in ATTEMPT if (out / name).exists()]
    if not here:
        return None
    stamp, n = time.strftime("superseded-%Y%m%d-%H%M%S"), 1
    dest = out / stamp
    while dest.exists():
        n += 1
        dest = out / f"{stamp}-{n}"
    dest.mkdir()
    for f in here:
        shutil.move(str(f), dest / ("results.superseded.json" if f.name == "results.json" else f.name))
    log.warning("%s: earlier attempt (%s) moved to %s; the job runs from the start", out, why, dest.name)
    return dest


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        return [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _write_rows(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _merge(first: Path, second: Path, dest: Path) -> None:
    """``first``'s rows then ``second``'s, under the union of their columns, into ``dest``."""
    (f1, r1), (f2, r2) = _rows(first), _rows(second)
    _write_rows(dest, f1 + [c for c in f2 if c not in f1], r1 + r2)


def stash_csv(out: Path) -> None:
    """Before a resumed attempt: the CSV rows so far go to ``csv/metrics.earlier.csv``."""
    log_dir = out / "csv"
    cur, earlier = log_dir / "metrics.csv", log_dir / "metrics.earlier.csv"
    if cur.is_file():
        _merge(earlier, cur, earlier)
        cur.unlink()


def open_resumed_csv(logger) -> None:
    """Open a resumed job's CSV log (a ``CSVLogger``). Lightning warns, when the log directory is
    not empty, that earlier log files "will be deleted": here they are not (``stash_csv`` put the
    earlier rows aside, ``merge_csv`` puts them back), so that one warning is silenced while the
    writer opens, and the log says where the rows are instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        logger.experiment  # noqa: B018  (creates the writer now, inside the filter)
    log.info("CSV rows of the earlier attempts: csv/metrics.earlier.csv, back in csv/metrics.csv at the end")


def merge_csv(out: Path) -> None:
    """After an attempt: the stashed rows back in front of this attempt's, in ``csv/metrics.csv``."""
    log_dir = out / "csv"
    cur, earlier = log_dir / "metrics.csv", log_dir / "metrics.earlier.csv"
    if earlier.is_file():
        _merge(earlier, cur, cur)
        earlier.unlink()
