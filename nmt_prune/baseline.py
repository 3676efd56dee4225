"""One dense baseline per sweep: a content-addressed cache of trained dense checkpoints.

Prune-after-fit jobs that share data, model, initialisation, optimiser, LR schedule, loss,
trainer settings and seed share one trained dense model. The cache key is a hash of exactly those
config parts (resolved); ``<cache>/dense/<key>/`` holds ``best.ckpt``, ``theta0.pt`` (the initial
weights, for lottery-ticket rewinding), ``results.json`` (the dense figures) and
``config.yaml`` (the keyed config, for humans).

A file lock (``<key>.lock``) makes parallel jobs wait for one training instead of each running
their own. The entry is built in ``.<key>.partial`` and renamed into place when complete, so a
killed job never leaves a half-written entry that another job could pick up; the next job that
needs the entry resumes that training from its ``last.ckpt`` (a long dense training survives
the end of a session) or, if there is none that loads, starts it over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from nmt_prune.resume import loadable

log = logging.getLogger(__name__)

#: the config parts a dense training depends on (bump FORMAT if the training code changes meaning)
KEY_PARTS = ("data", "model", "init", "optim", "lr_schedule", "loss", "trainer", "seed")
FORMAT = 1
#: trainer keys that change how a run looks, not what it learns
_TRAINER_COSMETIC = ("enable_progress_bar", "log_every_n_steps", "enable_model_summary")


def key_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config parts that determine the dense model, with data.root made absolute."""
    parts = {k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k]
             for k in KEY_PARTS}  # fmt: skip
    data = parts["data"]
    data.pop("download", None)
    if data.get("root"):
        data["root"] = str(Path(data["root"]).resolve())
    for k in _TRAINER_COSMETIC:
        parts["trainer"].pop(k, None)
    # an option that is off trains exactly as before it existed: leaving it out of the key keeps
    # the caches made before it valid
    wp = parts["loss"].get("weight_penalty")
    if wp is not None and (wp.get("type") == "none" or not wp.get("strength")):
        parts["loss"].pop("weight_penalty")
    parts["format"] = FORMAT
    return parts


def cache_key(cfg: DictConfig) -> str:
    blob = json.dumps(key_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: how long a job waits for another job's dense training before it gives up
LOCK_TIMEOUT_H = 48.0
#: how often a waiting job says it is still waiting
LOCK_REPORT_S = 600.0


@contextlib.contextmanager
def _waiting_lock(path: Path, key: str, timeout_h: float = LOCK_TIMEOUT_H, report_s: float = LOCK_REPORT_S):
    """The cache entry's file lock; a job that has to wait for it says so, says again every
    ``report_s`` that it is still waiting, and gives up after ``timeout_h`` hours."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=min(5.0, report_s))
    except Timeout:
        log.info("dense baseline %s: another job is training it; waiting for it (lock %s)", key, path)
        waited, deadline = 0.0, timeout_h * 3600
        while True:
            try:
                lock.acquire(timeout=min(report_s, max(deadline - waited, 0.001)))
                break
            except Timeout:
                waited += report_s
                if waited >= deadline:
                    raise TimeoutError(f"waited {timeout_h:g} h for the dense baseline {key} that another "
                                       f"job trains (lock {path}); if no job is training it, delete the "
                                       f"lock file and run again") from None  # fmt: skip
                log.info(
                    "dense baseline %s: still waiting for the job that trains it (%.0f min)", key, waited / 60
                )
    try:
        yield
    finally:
        lock.release()


def obtain(cfg: DictConfig, train: Callable[[Path, str | None], dict[str, Any]]) -> dict[str, Any]:
    """The dense baseline for ``cfg``: from the cache, or trained now by ``train(out_dir, resume)``
    (``resume``: a checkpoint of an earlier, killed attempt to continue from, or None).

    ``train`` must write ``checkpoints/best.ckpt`` and ``theta0.pt`` under
    ``out_dir`` and return the dense results dict. Returns that dict (read back from the cache)
    with ``checkpoint``, ``theta0``, ``cache_key``, ``cache_dir`` and ``trained_here`` (true in
    the one job that trained it).
    """
    root = Path(cfg.paths.cache_dir) / "dense"
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(cfg)
    final = root / key
    trained_here = False
    with _waiting_lock(root / f"{key}.lock", key):
        if not (final / "results.json").is_file():
            for stale in root.glob(f".{key}.tmp-*"):  # older naming of a killed job's dir; we hold the lock
                shutil.rmtree(stale, ignore_errors=True)
            tmp = root / f".{key}.partial"
            last = tmp / "checkpoints" / "last.ckpt"
            resume_from = str(last) if last.is_file() and loadable(last) else None
            if resume_from:
                log.info("dense baseline %s: resuming a killed training from %s", key, resume_from)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                log.info("dense baseline %s not cached: training it in %s", key, tmp)
            try:
                res = train(tmp, resume_from)
                if res.get("status") != "ok":
                    raise RuntimeError(f"dense baseline training failed: {res.get('error')}")
            except Exception:
                shutil.rmtree(tmp, ignore_errors=True)  # a failed training: the next job starts clean
                raise  # interrupted (KeyboardInterrupt, SIGTERM): kept, the next job resumes it
            best = Path(res["checkpoint"])
            shutil.copyfile(best, tmp / "best.ckpt")
            shutil.rmtree(tmp / "checkpoints")  # last.ckpt etc.: not needed, large
            res = {k: v for k, v in res.items() if k not in ("checkpoint",)}
            res["eval"] = OmegaConf.to_container(cfg.eval, resolve=True)  # how its figures were measured
            (tmp / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(key_config(cfg))))
            (tmp / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)  # atomic: the entry appears complete or not at all
            trained_here = True
        else:
            log.info("dense baseline %s found in the cache (%s)", key, final)
    res = json.loads((final / "results.json").read_text())
    res.update(checkpoint=str(final / "best.ckpt"), theta0=str(final / "theta0.pt"), cache_key=key,
               cache_dir=str(final), trained_here=trained_here)  # fmt: skip
    return res
