"""Checks on a checkpoint a job is given (``ckpt_path``, ``prune.baseline``, a dense cache entry)
before it is used: readable, ours, the same model shape and the same vocabularies.

A checkpoint of a model trained on other data can have tensors of the right shape: with a
vocabulary of the same size its word ids would silently mean other words. The checkpoint carries
its vocabularies (``data_state``), so they are compared word for word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


def load_checkpoint(path: str, key: str, map_location: str = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``, with errors that name ``key`` and the file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{key}={path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, random bytes, or a pickle with arbitrary objects
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ValueError(
            f"{key}={path} cannot be read as a checkpoint ({type(e).__name__}: {first}); "
            f"give a checkpoints/*.ckpt written by run.py"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(
            f"{key}={path} is not a run.py checkpoint (no state_dict); "
            f"give a checkpoints/*.ckpt written by run.py"
        )
    return ckpt


def _vocab_mismatch(side: str, theirs: list[str], ours: list[str]) -> str | None:
    if theirs == ours:
        return None
    n = min(len(theirs), len(ours))
    differ = [i for i in range(n) if theirs[i] != ours[i]]
    if not differ and len(theirs) == len(ours):
        return None
    first = f"; id {differ[0]} is {theirs[differ[0]]!r} there, {ours[differ[0]]!r} here" if differ else ""
    sizes = f"sizes {len(theirs)} vs {len(ours)}"
    return f"{side} vocabulary: {len(differ)} of {n} ids mean other words, {sizes}{first}"


def check_checkpoint(path: str, module: nn.Module, key: str = "ckpt_path") -> dict[str, Any]:
    """Fail before any work unless ``path`` holds a model of ``module``'s shape trained with its
    vocabularies; returns the loaded checkpoint."""
    ckpt = load_checkpoint(path, key)
    state, ours = ckpt["state_dict"], module.state_dict()
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs config {tuple(ours[k].shape)}"
        for k, v in state.items()
        if k in ours and v.shape != ours[k].shape
    ]
    missing = sorted(set(ours) ^ set(state))
    data = getattr(module, "data_state", None)
    if "data_state" in ckpt and data is not None:
        for side in ("src", "tgt"):
            msg = _vocab_mismatch(side, ckpt["data_state"][f"{side}_vocab"], data[f"{side}_vocab"])
            if msg:
                bad.insert(0, msg)
    if bad or missing:
        raise ValueError(
            f"{key}={path} was saved from a different model/data config: {bad[:5] + missing[:5]}; "
            f"use the same model=... and data=... as the run that made it"
        )
    return ckpt
