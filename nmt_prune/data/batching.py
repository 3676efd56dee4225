"""Batches: padded tensors from token ids (``collate``) and length-bucketed batch order."""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler

from nmt_prune.data.text import BOS_ID, EOS_ID, PAD_ID


def collate(examples: list[tuple[int, list[int], list[int]]]) -> dict[str, Tensor]:
    """(index, src ids, tgt ids) -> padded batch.

    src (B, S), src_len (B,), tgt_in (B, T) = BOS + y, tgt_out (B, T) = y + EOS, idx (B,),
    ntok (int): the number of target tokens (y + EOS) in the batch.
    """
    B = len(examples)
    S = max(len(s) for _, s, _ in examples)
    T = max(len(t) for _, _, t in examples) + 1
    src = torch.full((B, S), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((B, T), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((B, T), PAD_ID, dtype=torch.long)
    for b, (_, s, t) in enumerate(examples):
        src[b, : len(s)] = torch.tensor(s)
        tgt_in[b, : len(t) + 1] = torch.tensor([BOS_ID] + t)
        tgt_out[b, : len(t) + 1] = torch.tensor(t + [EOS_ID])
    return {
        "src": src,
        "src_len": torch.tensor([len(s) for _, s, _ in examples]),
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "idx": torch.tensor([i for i, _, _ in examples]),
        "ntok": sum(len(t) + 1 for _, _, t in examples),  # target tokens: a plain int, no device sync
    }


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` sentences of similar length.

    Training: shuffle, cut into pools of ``pool`` batches, sort each pool by (source, target)
    length, cut into batches, shuffle the batches; reshuffled every epoch from (seed, epoch).
    Evaluation (``shuffle=False``): sorted by source length, so each batch decodes quickly; the
    batch's ``idx`` restores the original order.
    """

    def __init__(
        self,
        lengths: list[tuple[int, int]],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        pool: int = 100,
    ) -> None:
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.seed, self.pool, self.epoch = seed, pool, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        if not self.shuffle:
            idx.sort(key=lambda i: self.lengths[i])
            return [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        rng = random.Random(self.seed * 100003 + self.epoch)
        rng.shuffle(idx)
        step = self.batch_size * self.pool
        batches = []
        for start in range(0, len(idx), step):
            chunk = sorted(idx[start : start + step], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size
