"""run(cfg): build data, model, trainer from a Hydra config; train, test, write the results.

The only module that knows about Hydra configs. Every file a job writes goes to its own output
directory (``paths.output_dir``): checkpoints, logger files, ``results.json`` and
``hypotheses.test.txt`` (see DESIGN.md, "Contracts").
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from nmt_prune.data.datamodule import DataConfig, NMTDataModule
from nmt_prune.model import init_weights
from nmt_prune.module import NMTModule
from nmt_prune.runtime import keep_freed_memory
from nmt_prune.stats import param_stats

log = logging.getLogger(__name__)
LOGGERS = ("wandb", "csv", "none")


def _wandb_mode() -> str:
    """WANDB_MODE if set; else online when the user is logged in (API key in the environment or
    ~/.netrc), offline otherwise: a run never needs an account or a network."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        logged_in = False
    return "online" if logged_in else "offline"


def make_logger(cfg: DictConfig, out: Path) -> Logger | bool:
    name = cfg.logger.name
    if name not in LOGGERS:
        raise ValueError(f"logger.name={name!r}; valid choices: {LOGGERS}")
    if name == "none":
        return False
    if name == "csv":
        return CSVLogger(save_dir=str(out), name="csv", version="")
    mode = _wandb_mode()
    return WandbLogger(
        project=cfg.logger.project, group=cfg.logger.group, save_dir=str(out), mode=mode,
        config=OmegaConf.to_container(cfg, resolve=True), tags=list(cfg.logger.tags or []),
    )  # fmt: skip


def check_checkpoint_shapes(path: str, module: pl.LightningModule) -> None:
    """Fail before training if ``path`` is missing or holds a model of another shape."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"ckpt_path={path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    ours = module.state_dict()
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs config {tuple(ours[k].shape)}"
           for k, v in state.items() if k in ours and v.shape != ours[k].shape]  # fmt: skip
    missing = sorted(set(ours) ^ set(state))
    if bad or missing:
        raise ValueError(
            f"ckpt_path={path} was saved from a different model/data config: "
            f"{bad[:5] + missing[:5]}; use the same model=... and data=... as the run that made it"
        )


def build(cfg: DictConfig) -> tuple[NMTDataModule, NMTModule]:
    """Data (tokenised, vocabularies built) and an initialised module."""
    dm = NMTDataModule(DataConfig(**OmegaConf.to_container(cfg.data, resolve=True)),
                       cfg.paths.cache_dir, cfg.seed)  # fmt: skip
    dm.setup()
    module = NMTModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        lr_schedule=OmegaConf.to_container(cfg.lr_schedule, resolve=True),
        eval=OmegaConf.to_container(cfg.eval, resolve=True),
        label_smoothing=cfg.loss.label_smoothing,
        data_state=dm.state(),
    )
    init_weights(module.model, cfg.init.scheme, cfg.init.scale, cfg.init.forget_bias)
    return dm, module


def _trainer(cfg: DictConfig, out: Path, logger: Logger | bool) -> pl.Trainer:
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best", monitor="val/ppl", mode="min",
        save_last=True, auto_insert_metric_name=False,
    )  # fmt: skip
    callbacks: list[pl.Callback] = [ckpt]
    progress = bool(cfg.trainer.get("enable_progress_bar", True)) and sys.stdout.isatty()
    if progress:
        callbacks.append(RichProgressBar())
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.trainer).items() if k != "enable_progress_bar"}
    return pl.Trainer(default_root_dir=str(out), logger=logger, callbacks=callbacks,
                      enable_progress_bar=progress, **kwargs)  # fmt: skip


def run(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train the dense model, test the best checkpoint, write results.json. Returns the results.

    On any exception ``results.json`` says ``status: failed`` with the error, the W&B run is
    finished, and the exception propagates (so a multirun reports it).
    """
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"status": "running", "overrides": list(overrides or [])}
    logger: Logger | bool = False
    for name in ("lightning.pytorch", "lightning.fabric"):  # one handler (Hydra's root), not two
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    try:
        torch.set_num_threads(cfg.threads)
        if cfg.keep_freed_memory:
            keep_freed_memory()
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        dm, module = build(cfg)
        if cfg.ckpt_path:
            check_checkpoint_shapes(cfg.ckpt_path, module)
        logger = make_logger(cfg, out)
        trainer = _trainer(cfg, out, logger)
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.ckpt_path)
        train_s = time.perf_counter() - t0
        history = list(module.history)  # loading the best checkpoint below rolls it back
        t0 = time.perf_counter()
        best = trainer.checkpoint_callback.best_model_path or None
        val = trainer.validate(module, datamodule=dm, ckpt_path=best, verbose=False)[0]
        test = trainer.test(module, datamodule=dm, ckpt_path=best, verbose=False)[0]
        eval_s = time.perf_counter() - t0
        (out / "hypotheses.test.txt").write_text("\n".join(module.last_hyps) + "\n", encoding="utf-8")
        results.update(
            status="ok",
            prune=None,
            **param_stats(module.model),
            val_ppl=val["val/ppl"],
            val_bleu=val.get("val/bleu"),
            test_ppl=test["test/ppl"],
            test_bleu=test["test/bleu"],
            test_bleu_lc=test["test/bleu_lc"],
            test_bleu_tok_lc=test["test/bleu_tok_lc"],
            bleu_signature=module.last_signature,
            dense=None,
            timings={
                "train_s": train_s,
                "prune_s": 0.0,
                "retrain_s": 0.0,
                "eval_s": eval_s,
                "test_decode_s": test["test/decode_s"],
            },  # fmt: skip
            checkpoint=best,
            history=history,
            data={
                "name": cfg.data.name,
                "vocab_src": len(dm.src_vocab),
                "vocab_tgt": len(dm.tgt_vocab),
                "train_pairs": len(dm.splits["train"].src),
                "dropped": dm.n_dropped,
            },  # fmt: skip
        )
        return results
    except BaseException as e:
        results.update(status="failed", error=f"{type(e).__name__}: {e}",
                       traceback=traceback.format_exc())  # fmt: skip
        raise
    finally:
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        if isinstance(logger, WandbLogger):
            import wandb

            wandb.finish(exit_code=0 if results["status"] == "ok" else 1)
