"""Content-addressed cache of saliency statistics (OBD's Hessian diagonal): a statistic is read
back only for the same weights, data and settings, whatever the run or sweep asks for it.

One dense model is pruned at many percentages by a sweep; a statistic over its whole training
set (OBD's diagonal on Multi30k: about 20 min at one thread) is then computed once. Entries are
written atomically (a concurrent job reads a whole file or none) and a damaged one is computed
again, never trusted. Like the dense-baseline cache (nmt_prune/baseline.py), the key is a hash
of what the value depends on, so an entry can be wrong only if its inputs are.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)


def fingerprint(tensors: Iterable[Tensor], *extra: object) -> str:
    """A content hash of tensors (values, shapes, dtypes, in order) and ``extra``."""
    sha = hashlib.sha256(repr(extra).encode())
    for t in tensors:
        t = t.detach().cpu().contiguous()
        sha.update(f"{tuple(t.shape)}{t.dtype}".encode())
        sha.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return sha.hexdigest()[:16]


def cached(
    cache: Path | None, name: str, key: str, compute: Callable[[], dict[str, Tensor]], device: torch.device
) -> tuple[dict[str, Tensor], bool]:
    """``compute()``'s tensors, from ``cache/<name>-<key>.pt`` if there (True) or computed and
    stored there (False). ``cache`` None: computed, nothing stored."""
    if cache is None:
        return compute(), False
    f = cache / f"{name}-{key}.pt"
    if f.is_file():
        try:
            value = torch.load(f, map_location=device, weights_only=True)
            log.info("%s read from the cache (%s)", name, f)
            return value, True
        except Exception as e:  # a damaged entry costs a recomputation, never a wrong score
            log.warning("cache entry %s unreadable (%s): computing it again", f, e)
    value = compute()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(f".tmp{os.getpid()}")
    torch.save({n: t.cpu() for n, t in value.items()}, tmp)
    os.replace(tmp, f)
    return value, False
