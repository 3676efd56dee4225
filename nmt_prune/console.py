"""What a run prints: one line per epoch, progress of long steps, and a last line with the result.

Everything else (Lightning's notices: accelerator, checkpoint restores, tips) still goes to the
job's log file (Hydra's ``<job dir>/<name>.log``) but not to the console; Lightning's own
console handlers, which printed each of its lines a second time, are removed. Three warnings that
say nothing about the run are silenced (``BENIGN_WARNINGS``); every other warning still shows.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: (message regex, why it is harmless here)
BENIGN_WARNINGS = (
    (
        ".*The `srun` command is available on your system but is not used.*",
        "SLURM installed on the machine; jobs under SLURM are launched by submitit, not srun",
    ),
    (".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*", "inside Lightning, not ours"),
    (".*smaller than the logging interval.*", "tiny runs: fewer batches than log_every_n_steps"),
)


class _ConsoleFilter(logging.Filter):
    """Lightning's INFO notices: to the log file only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("lightning") and record.levelno < logging.WARNING)


def quiet_console() -> None:
    """Call once a job starts (Hydra has set up its console and file handlers on the root logger)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # one handler (Hydra's), not two
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for h in logging.getLogger().handlers:
        if type(h) is logging.StreamHandler and not any(isinstance(f, _ConsoleFilter) for f in h.filters):
            h.addFilter(_ConsoleFilter())
    for pattern, _why in BENIGN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def result_line(results: dict[str, Any], out: Path) -> str:
    """The run's last line: its status and headline figures, and where results.json is."""
    where = out / "results.json"
    status = results.get("status")
    if status != "ok":
        err = str(results.get("error") or "").strip().splitlines()
        return f"{status}: {err[0][:300] if err else '(no message)'}; see {where}"
    parts = []
    if results.get("test_bleu") is not None:
        parts.append(f"test BLEU {results['test_bleu']:.2f}")
    dense, pruned = results.get("dense") or {}, results.get("pruned") or {}
    if dense.get("test_bleu") is not None:
        parts.append(f"dense {dense['test_bleu']:.2f}")
    if pruned.get("test_bleu") is not None:
        parts.append(f"before retraining {pruned['test_bleu']:.2f}")
    if results.get("val_ppl") is not None:
        parts.append(f"val ppl {results['val_ppl']:.3f}")
    if (results.get("prune") or {}).get("pct"):
        parts.append(f"sparsity {100 * results.get('sparsity', 0):.1f}%")
    tr = results.get("training") or {}
    if tr.get("epochs") is not None:
        parts.append(f"{tr['epochs']} epochs ({tr.get('stop_reason')})")
    return f"ok: {', '.join(parts)}; {where}"


class Progress:
    """Logs ``label: i/total`` at most every ``every_s`` seconds and once at the end."""

    def __init__(self, label: str, total: int, unit: str, every_s: float = 30.0) -> None:
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.t0 = self.last = time.perf_counter()
        self.i = 0

    def step(self, n: int = 1) -> None:
        self.i += n
        now = time.perf_counter()
        if self.i >= self.total or now - self.last >= self.every_s:
            self.last = now
            log.info("%s: %d/%d %s, %.0f s", self.label, self.i, self.total, self.unit, now - self.t0)
