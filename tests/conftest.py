"""Shared fixtures: a small toy corpus, composed configs, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import nmt_prune.schema  # noqa: F401  (registers the prune node's schema for compose)
from nmt_prune.data.datamodule import DataConfig, NMTDataModule

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "offline")  # tests never log online
torch.set_num_threads(1)


#: the tests' model and data: a tiny model on a small toy corpus, no logger, one thread
BASE = [
    "model=tiny",
    "logger=none",
    "threads=1",
    "data.toy_sizes.train=300",
    "data.toy_sizes.val=40",
    "data.toy_sizes.test=40",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (``slow``, then ``slurm``, then ``integration``): under ``-n auto``
    one worker starts the longest test while the others take the rest, instead of it starting
    last and the suite waiting on it alone (longest-first scheduling). A stable sort: the order
    within each kind is the files' order."""
    kinds = ("slow", "slurm", "integration")

    def rank(item: pytest.Item) -> int:
        return next((i for i, k in enumerate(kinds) if item.get_closest_marker(k)), len(kinds))

    items.sort(key=rank)


def make_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    """The real config, composed as run.py would, shrunk for tests (``BASE``), at tmp_path."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                *BASE,
                f"paths.output_dir={tmp_path / 'out'}",
                f"paths.cache_dir={tmp_path / 'cache'}",
                *overrides,
            ],
        )


#: with make_cfg, a job that runs in seconds: two short epochs, beam 2, one retraining epoch
FAST = ["trainer.max_epochs=2", "trainer.limit_train_batches=6", "eval.beam_size=2", "prune.retrain.epochs=1"]
#: the same on a command line (run.py in a subprocess: make_cfg's BASE is not there)
TINY = [*BASE, *FAST]


def check_masks_hold(ckpt: str, res: dict) -> None:
    """The checkpoint of a pruned job holds its masks, and its pruned weights are exactly zero."""
    from nmt_prune.masks import masks_from_checkpoint

    masks = masks_from_checkpoint(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert masks.n_pruned() == res["prune"]["n_pruned"]
    for name, keep in masks.masks.items():
        assert torch.all(state[f"model.{name}"][~keep] == 0), name


def quiet_trainer(**kwargs):
    """A Lightning Trainer for a test's own fit: no logger, checkpoints, progress bar, model
    summary or validation, unless ``kwargs`` say otherwise."""
    import lightning.pytorch as pl

    quiet = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
    }
    return pl.Trainer(**{**quiet, **kwargs})


def tiny_module(dm: NMTDataModule, **optim):
    """A 1-layer, 8/12-wide NMTModule on ``dm``'s vocabularies (Adam 0.01 unless ``optim`` says
    otherwise), no dropout, no validation BLEU: the tests' own fits."""
    from nmt_prune.module import NMTModule

    return NMTModule(
        model={"emb_size": 8, "hidden_size": 12, "layers": 1, "dropout": 0.0},
        optim={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01, **optim},
        lr_schedule={"name": "none"},
        eval={"val_bleu": False},
        data_state=dm.state(),
    )


@pytest.fixture
def toy_dm(tmp_path: Path) -> NMTDataModule:
    cfg = DataConfig(toy_sizes={"train": 300, "val": 40, "test": 40}, batch_size=16, eval_batch_size=16)
    dm = NMTDataModule(cfg, tmp_path / "cache", seed=0)
    dm.setup()
    return dm
