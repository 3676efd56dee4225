"""Building blocks of a job: threads, data, module, trainer; dense training and evaluation."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from callbacks.convergence import Convergence, stop_record
from callbacks.divergence import Diverged, Divergence
from callbacks.rng_state import RngState
from nmt_prune import lending
from nmt_prune.checkpoints import check_checkpoint
from nmt_prune.data.datamodule import DataConfig, NMTDataModule
from nmt_prune.init import init_weights
from nmt_prune.module import CONVERGENCE_RULES, NMTModule
from nmt_prune.names import TEST_BLEU, TEST_PPL, VAL_BLEU, VAL_PPL
from nmt_prune.stats import param_stats

log = logging.getLogger(__name__)


def effective_threads(threads: int, parallel_jobs: int) -> int:
    """Torch threads for a job: never more than the cores divided among the parallel jobs
    (an oversubscribed LSTM runs many times slower; README, "Speed")."""
    if parallel_jobs == 1:
        return threads
    cores = os.cpu_count() or 1
    jobs = cores if parallel_jobs < 1 else parallel_jobs
    return max(1, min(threads, cores // jobs))


def build_data(cfg: DictConfig) -> NMTDataModule:
    """Data, tokenised, vocabularies built."""
    dm = NMTDataModule(
        DataConfig(**OmegaConf.to_container(cfg.data, resolve=True)), cfg.paths.cache_dir, cfg.seed
    )
    dm.setup()
    return dm


def build_module(cfg: DictConfig, dm: NMTDataModule, init_seed: int | None = None) -> NMTModule:
    """A module initialised by ``cfg.init``, from RNG seed ``init_seed`` (default ``cfg.seed``).

    Seeding here, right before the initialisation, makes theta_0 a function of the config alone:
    a dense run, the cached dense baseline and a rewind to init all see the same theta_0.
    """
    module = NMTModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        lr_schedule=OmegaConf.to_container(cfg.lr_schedule, resolve=True),
        eval=OmegaConf.to_container(cfg.eval, resolve=True),
        label_smoothing=cfg.loss.label_smoothing,
        weight_penalty=OmegaConf.to_container(cfg.loss.weight_penalty),
        loss_normalize=cfg.loss.get("normalize", "token"),
        data_state=dm.state(),
    )
    pl.seed_everything(cfg.seed if init_seed is None else init_seed, workers=True, verbose=False)
    init_weights(module.model, cfg.init.scheme, cfg.init.scale, cfg.init.forget_bias)
    return module


def build(cfg: DictConfig) -> tuple[NMTDataModule, NMTModule]:
    """Data (tokenised, vocabularies built) and an initialised module."""
    dm = build_data(cfg)
    return dm, build_module(cfg, dm)


def make_trainer(
    cfg: DictConfig,
    out: Path,
    logger: Logger | bool,
    callbacks: list[pl.Callback] | None = None,
    monitor: str = VAL_PPL,
    **overrides: Any,
) -> pl.Trainer:
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best",
        monitor=monitor,
        mode="min",
        save_last=True,
        auto_insert_metric_name=False,
    )
    # RngState: a resumed fit draws as if never stopped; Divergence: a NaN loss fails the job
    callbacks = [ckpt, RngState(), Divergence(), *(callbacks or [])]
    sched = cfg.lr_schedule
    if sched.name in CONVERGENCE_RULES:
        settings = {k: sched[k] for k in ("patience", "factor", "max_halvings") if k in sched}
        callbacks.append(Convergence(sched.name, monitor, **settings))
    borrow = lending.borrower()  # training a dense baseline that other jobs wait for
    if borrow is not None:
        callbacks.append(borrow)
    progress = bool(cfg.trainer.get("enable_progress_bar", True)) and sys.stdout.isatty()
    if progress:
        callbacks.append(RichProgressBar())
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.trainer).items() if k != "enable_progress_bar"}
    kwargs.update(overrides)
    return pl.Trainer(
        default_root_dir=str(out), logger=logger, callbacks=callbacks, enable_progress_bar=progress, **kwargs
    )


def training_record(trainer: pl.Trainer) -> dict[str, Any]:
    """results.json ``training``: the epochs a fit ran and why it stopped."""
    rule = next((c for c in trainer.callbacks if isinstance(c, Convergence)), None)
    rec = stop_record(trainer, trainer.current_epoch, rule)
    borrow = next((c for c in trainer.callbacks if isinstance(c, lending.BorrowThreads)), None)
    if borrow is not None:  # the thread counts it ran with, waiting jobs' lent threads included
        rec["threads"] = borrow.used
    return rec


def data_summary(cfg: DictConfig, dm: NMTDataModule) -> dict[str, Any]:
    return {
        "name": cfg.data.name,
        "vocab_src": len(dm.src_vocab),
        "vocab_tgt": len(dm.tgt_vocab),
        "train_pairs": len(dm.splits["train"].src),
        "dropped": dm.n_dropped,
    }


FIGURES = ("val_ppl", "val_bleu", "test_ppl", "test_bleu", "test_bleu_lc")


def evaluate(trainer: pl.Trainer, module: NMTModule, dm: NMTDataModule, ckpt: str | None) -> dict[str, Any]:
    """Validate and test (``ckpt``: a checkpoint to load first, or None for the current weights)."""
    t0 = time.perf_counter()
    val = trainer.validate(module, datamodule=dm, ckpt_path=ckpt, verbose=False)[0]
    test = trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False)[0]
    bad = {k: m[k] for k, m in ((VAL_PPL, val), (TEST_PPL, test)) if not math.isfinite(m[k])}
    if bad:  # NaN weights (or a NaN computation): not a result to report as ok
        weights = f"checkpoint {ckpt}" if ckpt else "the current weights"
        raise Diverged(f"the model's outputs are not numbers: {bad} ({weights})")
    return {
        "val_ppl": val[VAL_PPL],
        "val_bleu": val.get(VAL_BLEU),
        "test_ppl": test[TEST_PPL],
        "test_bleu": test[TEST_BLEU],
        "test_bleu_lc": test["test/bleu_lc"],
        "test_bleu_tok_lc": test["test/bleu_tok_lc"],
        "bleu_signature": module.last_signature,
        "eval_s": time.perf_counter() - t0,
        "test_decode_s": test["test/decode_s"],
    }


def write_hyps(out: Path, module: NMTModule) -> None:
    (out / "hypotheses.test.txt").write_text("\n".join(module.last_hyps) + "\n", encoding="utf-8")


def train_dense(
    cfg: DictConfig,
    dm: NMTDataModule,
    out: Path,
    logger: Logger | bool,
    resume: str | None = None,
    callbacks: list[pl.Callback] | None = None,
    monitor: str = VAL_PPL,
) -> dict[str, Any]:
    """Train the dense model, test its best checkpoint; writes ``checkpoints/{best,last}.ckpt``,
    ``theta0.pt`` (the initial weights) and ``hypotheses.test.txt`` under ``out``.

    ``callbacks`` prune at init or during training; ``monitor`` is the metric that picks the
    best checkpoint (``val/ppl_at_target`` for schedules: epochs at the final sparsity only)."""
    module = build_module(cfg, dm)
    if resume:
        check_checkpoint(resume, module, "ckpt_path")
    theta0 = out / "theta0.pt"
    if not theta0.exists():  # a resumed run keeps the theta_0 of its first start
        torch.save(module.model.state_dict(), theta0)
    trainer = make_trainer(cfg, out, logger, callbacks, monitor=monitor)
    trainer.fit(module, datamodule=dm, ckpt_path=resume)
    train_s = module.fit_s()  # the attempts it resumed included
    history = list(module.history)  # loading the best checkpoint below rolls it back
    training = training_record(trainer)
    best = trainer.checkpoint_callback.best_model_path or None
    ev = evaluate(trainer, module, dm, best)
    write_hyps(out, module)
    timings = {
        "train_s": train_s,
        "prune_s": 0.0,
        "retrain_s": 0.0,
        "eval_s": ev.pop("eval_s"),
        "test_decode_s": ev.pop("test_decode_s"),
    }
    return dict(
        status="ok",
        prune=None,
        **param_stats(module.model),
        **ev,
        dense=None,
        timings=timings,
        checkpoint=best,
        history=history,
        training=training,
        data=data_summary(cfg, dm),
    )


def load_weights(module: NMTModule, path: str, key: str) -> None:
    module.load_state_dict(check_checkpoint(path, module, key)["state_dict"])


@torch.no_grad()
def val_ppl(cfg: DictConfig, dm: NMTDataModule, ckpt: str) -> float:
    """Validation perplexity of the model in ``ckpt`` (a model of ``cfg`` with ``dm``'s
    vocabularies, else ValueError), measured as validation does, without a Trainer."""
    module = build_module(cfg, dm)
    load_weights(module, ckpt, "dense cache entry")
    return module.split_ppl(dm.val_dataloader())
