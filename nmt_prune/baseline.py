"""One dense baseline per sweep: a content-addressed cache of trained dense checkpoints.

Prune-after-fit jobs that share data, model, initialisation, optimiser, LR schedule, loss, trainer
settings and seed share one trained dense model. The cache key is a hash of exactly those config
parts (resolved), of the data's content (the SHA-256 of every split file, so a corpus edited in
place, or a toy corpus of another grammar version, gets a new entry; where the files lie does not
count) and of the code that decides what a dense training learns (nmt_prune/code_fingerprint.py:
comments, formatting and docs do not count, a changed line of code does). ``<cache>/dense/<key>/``
holds ``best.ckpt``, ``theta0.pt`` (the initial weights, for lottery-ticket rewinding),
``results.json`` (the dense figures) and ``config.yaml`` (the keyed config and fingerprints, for
humans).

Adoption: when the key misses but an entry exists for the same config made by other code (or by
a version of this cache from before the fingerprints), the entry is re-measured with the code and
data of this job (its validation perplexity, and the vocabularies word for word): if they
reproduce what the entry recorded, the entry is adopted under the new key (hard links, its
``results.json`` says ``adopted`` from where and both perplexities), so a refactoring of the
model code does not throw away hours of training; if they do not, a new model is trained.

A file lock (``<key>.lock``) makes parallel jobs wait for one training instead of each running
their own. The entry is built in ``.<key>.partial`` and renamed into place when complete, so a
killed job never leaves a half-written entry that another job could pick up; the next job that
needs the entry resumes that training from its ``last.ckpt`` (a long dense training survives
the end of a session) or, if there is none that loads, starts it over. An entry that cannot be
read (a disk fault, a copy cut short) is moved to ``.<key>.broken-<time>`` and trained again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nmt_prune import lending
from nmt_prune.cache_lock import waiting_lock
from nmt_prune.code_fingerprint import code_version
from nmt_prune.names import TRAINER_COSMETIC
from nmt_prune.resume import loadable
from nmt_prune.runtime import machine_record

log = logging.getLogger(__name__)

#: the config parts a dense training depends on
KEY_PARTS = ("data", "model", "init", "optim", "lr_schedule", "loss", "trainer", "seed")
FORMAT = 2  # 1: no fingerprints, data.root in the key
#: relative difference of the re-measured val perplexity that still counts as reproduced
ADOPT_RTOL = 1e-3


def key_config(cfg: DictConfig, data_fingerprint: str | None = None) -> dict[str, Any]:
    """The resolved config parts that determine the dense model, and the fingerprints of the data
    (``data_fingerprint``: the data module's) and of the code."""
    parts = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k]
        for k in KEY_PARTS
    }
    data = parts["data"]
    data.pop("download", None)
    data.pop("root", None)  # where the files lie does not count; what they hold does
    for k in TRAINER_COSMETIC:
        parts["trainer"].pop(k, None)
    # an option that is off trains exactly as before it existed: leaving it out of the key keeps
    # the caches made before it valid
    wp = parts["loss"].get("weight_penalty")
    if wp is not None and (wp.get("type") == "none" or not wp.get("strength")):
        parts["loss"].pop("weight_penalty")
    if parts["loss"].get("normalize") == "token":  # the loss before the option existed
        parts["loss"].pop("normalize")
    if parts["model"].get("reverse_source") is False:  # the encoder before the option existed
        parts["model"].pop("reverse_source")
    parts["format"] = FORMAT
    parts["fingerprint"] = {"data": data_fingerprint, "code": code_version()}
    return parts


def cache_key(cfg: DictConfig, data_fingerprint: str | None = None) -> str:
    blob = json.dumps(key_config(cfg, data_fingerprint), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _comparable(parts: dict[str, Any]) -> dict[str, Any]:
    """A key config without what adoption re-checks by measurement (fingerprints, format) and
    without data.root (format 1 kept it)."""
    out = {k: v for k, v in parts.items() if k not in ("format", "fingerprint")}
    out["data"] = {k: v for k, v in out["data"].items() if k != "root"}
    return out


def _write_entry(d: Path, cfg: DictConfig, data_fp: str | None, res: dict[str, Any]) -> None:
    for name in ("config.yaml", "results.json"):  # new files, never edits of a hard-linked one
        (d / name).unlink(missing_ok=True)
    (d / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(key_config(cfg, data_fp))))
    (d / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")


def _adopt(
    root: Path, key: str, cfg: DictConfig, data_fp: str | None, measure: Callable[[Path], float]
) -> bool:
    """Adopt as ``key`` (hard links) an entry of the same config made by other code or an older
    cache format whose val perplexity ``measure(best.ckpt)`` reproduces; whether one was."""
    want = _comparable(key_config(cfg, data_fp))
    for entry in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        try:
            parts = OmegaConf.to_container(OmegaConf.load(entry / "config.yaml"), resolve=True)
            res = json.loads((entry / "results.json").read_text())
            recorded = float(res["val_ppl"])
        except Exception:  # not an entry, or a broken one: never adopted
            continue
        theirs = parts.get("fingerprint") or {}
        if _comparable(parts) != want or theirs.get("data") not in (None, data_fp):
            continue
        try:
            now = measure(entry / "best.ckpt")
        except ValueError as e:  # other vocabularies, other shapes: another model
            log.info("dense baseline %s: not adopted (%s)", entry.name, e)
            continue
        if abs(now - recorded) > ADOPT_RTOL * recorded:
            log.info(
                "dense baseline %s: not adopted: val ppl %.4f re-measured, %.4f recorded",
                entry.name,
                now,
                recorded,
            )
            continue
        tmp = root / f".{key}.adopt"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(entry, tmp, copy_function=os.link)
        res["adopted"] = {
            "from": entry.name,
            "format": parts.get("format", 1),
            "code": theirs.get("code"),
            "val_ppl_recorded": recorded,
            "val_ppl_measured": now,
        }
        _write_entry(tmp, cfg, data_fp, res)
        os.replace(tmp, root / key)
        log.info(
            "dense baseline %s adopted from %s (made by other code): val ppl %.4f re-measured, %.4f recorded",
            key,
            entry.name,
            now,
            recorded,
        )
        return True
    return False


def _set_aside_if_broken(root: Path, key: str) -> None:
    """An entry whose results.json, best.ckpt or theta0.pt (where there is one: a GPU session's
    copy has none) cannot be read, a disk fault or a copy cut short, is moved to
    ``.{key}.broken-<time>`` with a warning and trained again, instead of failing every job."""
    final, problems = root / key, []
    try:
        json.loads((final / "results.json").read_text())
    except Exception as e:
        problems.append(f"results.json: {type(e).__name__}")
    for name in ("best.ckpt", "theta0.pt"):
        needed = name == "best.ckpt" or (final / name).exists()
        if needed and not loadable(final / name, then="the dense entry is set aside"):
            problems.append(f"{name}: not loadable")
    if problems:
        aside = root / f".{key}.broken-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(final, aside)
        log.warning(
            "dense baseline %s cannot be read (%s): moved to %s, training it again",
            key,
            "; ".join(problems),
            aside,
        )


def obtain(
    cfg: DictConfig,
    train: Callable[[Path, str | None], dict[str, Any]],
    data_fingerprint: str | None = None,
    measure: Callable[[Path], float] | None = None,
) -> dict[str, Any]:
    """The dense baseline for ``cfg``: from the cache, or trained now by ``train(out_dir, resume)``
    (``resume``: a checkpoint of an earlier, killed attempt to continue from, or None).

    ``train`` must write ``checkpoints/best.ckpt`` and ``theta0.pt`` under
    ``out_dir`` and return the dense results dict. ``data_fingerprint``: the data module's.
    ``measure(checkpoint)``: the val perplexity of a checkpoint with this job's code and data
    (raising ValueError for a checkpoint of other vocabularies); given, an entry of the same
    config made by other code is adopted when it reproduces (module docstring). Returns the dense
    results dict (read back from the cache) with ``checkpoint``, ``theta0``, ``cache_key``,
    ``cache_dir`` and ``trained_here`` (true in the one job that trained it).
    """
    root = Path(cfg.paths.cache_dir) / "dense"
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(cfg, data_fingerprint)
    final = root / key
    trained_here = False
    lend = bool(cfg.get("lend_threads", True))
    with waiting_lock(root / f"{key}.lock", key, lend=lend):
        if (final / "results.json").is_file():
            _set_aside_if_broken(root, key)
        adopted = (
            measure is not None
            and not (final / "results.json").is_file()
            and _adopt(root, key, cfg, data_fingerprint, measure)
        )
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
                borrow = lending.borrowing(root / f"{key}.waiting") if lend else contextlib.nullcontext()
                with borrow:  # the jobs waiting for it lend their threads
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
            res["machine"] = machine_record(cfg.trainer.accelerator)  # where it was trained
            _write_entry(tmp, cfg, data_fingerprint, res)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)  # atomic: the entry appears complete or not at all
            trained_here = True
        elif not adopted:
            log.info("dense baseline %s found in the cache (%s)", key, final)
    res = json.loads((final / "results.json").read_text())
    res.update(
        checkpoint=str(final / "best.ckpt"),
        theta0=str(final / "theta0.pt"),
        cache_key=key,
        cache_dir=str(final),
        trained_here=trained_here,
    )
    return res
