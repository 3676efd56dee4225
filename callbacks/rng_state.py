"""The random generators' states in every checkpoint, so a resumed fit draws what an uninterrupted
one would.

Lightning's checkpoints hold the weights, the optimizer and the loops' progress, not the random
generators. A fit resumed from ``last.ckpt`` (a killed job, or a retraining cap raised:
nmt_prune/resume.py) would otherwise continue from whatever state the new process reached while
it set up (``seed_everything``, the model's initialisation, ...), so its dropout masks would differ
from those of a fit that never stopped: the same recipe, other numbers. Batches are shuffled from
(seed, epoch), so the generators are all that is missing. This callback's ``state_dict`` goes into
each checkpoint when it is written (after an epoch's training and validation, where the next epoch
of an uninterrupted fit starts from) and is put back when a fit resumes from it. A checkpoint
written before this callback existed has no such state: the fit resumes as before, with a warning.

Saved: torch's CPU generator, the CUDA generators (when there are as many devices as when it was
saved), Python's ``random``. Nothing here uses NumPy's generator. The states are tensors and
tuples of ints: the checkpoint still loads with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import lightning.pytorch as pl
import torch

log = logging.getLogger(__name__)


class RngState(pl.Callback):
    def __init__(self) -> None:
        self.restored = False

    def state_dict(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {"torch": torch.get_rng_state(), "cuda": cuda, "python": random.getstate()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        cuda = state_dict.get("cuda") or []
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        elif cuda:
            log.warning("the checkpoint's CUDA generator states (%d devices) not restored here", len(cuda))
        random.setstate(state_dict["python"])
        self.restored = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path and not self.restored:
            log.warning(
                "%s holds no random generator states (written before they were saved): the resumed "
                "fit draws other dropout masks than an uninterrupted one would",
                trainer.ckpt_path,
            )
