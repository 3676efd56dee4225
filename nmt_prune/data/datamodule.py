"""Tokenised, length-bucketed batches for training and evaluation, as a LightningDataModule."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from nmt_prune.data.batching import BucketBatchSampler, collate  # noqa: F401  (re-exported)
from nmt_prune.data.corpus import (
    MULTI30K_SHA256,
    data_fingerprint,
    download_multi30k,
    drop_noise,
    read_parallel,
    write_toy_corpus,
)
from nmt_prune.data.text import EOS_ID, Tokenizer, Vocab, encode_source
from nmt_prune.data.toy import GRAMMAR_VERSION
from nmt_prune.validate import DataMissing, DataUnusable

log = logging.getLogger(__name__)
DATASETS = ("toy", "multi30k")
SPLITS = ("train", "val", "test")


@dataclass
class DataConfig:
    """What ``conf/data/*.yaml`` holds (see the comments there)."""

    name: str = "toy"
    root: str | None = None
    src_lang: str = "src"
    tgt_lang: str = "tgt"
    splits: dict[str, str] = field(default_factory=lambda: {s: s for s in SPLITS})
    toy_seed: int = 1
    toy_sizes: dict[str, int] = field(default_factory=lambda: {"train": 20000, "val": 500, "test": 500})
    download: bool = True
    tokenizer: str = "moses"
    lowercase: bool = False
    spm_vocab_size: int = 8000
    min_freq: int = 1
    max_vocab: int | None = None
    max_len: int = 50
    batch_size: int = 64
    eval_batch_size: int = 128
    bucket_pool: int = 100


@dataclass
class Split:
    """One split: raw source/reference lines and encoded id lists (source ends with EOS)."""

    src_raw: list[str]
    tgt_raw: list[str]
    src: list[list[int]]
    tgt: list[list[int]]


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split.src)

    def __getitem__(self, i: int) -> tuple[int, list[int], list[int]]:
        return i, self.split.src[i], self.split.tgt[i]


class NMTDataModule(pl.LightningDataModule):
    """Reads (or generates / downloads) the corpus, tokenises it and builds the vocabularies.

    The vocabularies and tokenisers come from the training split only. ``max_len`` filters
    training pairs only; validation and test keep every line so hypotheses stay aligned with the
    reference files.
    """

    def __init__(self, cfg: DataConfig, cache_dir: str | Path, seed: int = 0) -> None:
        super().__init__()
        if cfg.name not in DATASETS:
            raise ValueError(f"data.name={cfg.name!r}; valid choices: {DATASETS}")
        self.cfg, self.cache_dir, self.seed = cfg, Path(cache_dir), seed
        self.splits: dict[str, Split] = {}
        #: the SHA-256 of the split files' content (set by ``setup``): what the data *is*
        self.fingerprint: str | None = None
        self.n_dropped = {"noise": 0, "too_long": 0}

    # ----------------------------------------------------------------------- files
    def data_dir(self) -> Path:
        """Directory holding ``{split}.{lang}`` files (generated / downloaded if needed)."""
        cfg = self.cfg
        if cfg.name == "toy":
            sizes = {cfg.splits[s]: cfg.toy_sizes[s] for s in SPLITS}
            # the directory names everything the corpus depends on: a cached corpus of other
            # sizes or of an older grammar must never be picked up silently
            key = "-".join(str(sizes[cfg.splits[s]]) for s in SPLITS)
            name = f"toy-v{GRAMMAR_VERSION}-seed{cfg.toy_seed}-{key}"
            d = Path(cfg.root) if cfg.root else self.cache_dir / name
            write_toy_corpus(d, cfg.toy_seed, sizes, (cfg.src_lang, cfg.tgt_lang))
            return d
        d = Path(cfg.root) if cfg.root else self.cache_dir / "multi30k"
        files = [f"{cfg.splits[s]}.{lang}" for s in SPLITS for lang in (cfg.src_lang, cfg.tgt_lang)]
        missing = [f for f in files if not (d / f).is_file()]
        if missing and not cfg.download:
            raise DataMissing(
                f"data.root={d} lacks {missing}; put the Multi30k task-1 text files there "
                f"or set data.download=true"
            )
        if missing:
            known = [f for f in missing if f in MULTI30K_SHA256]
            download_multi30k(d, known)
        return d

    def prepare_data(self) -> None:
        self.data_dir()

    # ----------------------------------------------------------------------- tokenise
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        cfg, d = self.cfg, self.data_dir()
        self.fingerprint = data_fingerprint(
            [d / f"{cfg.splits[s]}.{lang}" for s in SPLITS for lang in (cfg.src_lang, cfg.tgt_lang)]
        )
        raw = {
            s: read_parallel(d / f"{cfg.splits[s]}.{cfg.src_lang}", d / f"{cfg.splits[s]}.{cfg.tgt_lang}")
            for s in SPLITS
        }
        for s, (src, _) in raw.items():
            if not src:  # fails at once, not after an epoch with an unrelated scheduler message
                raise DataUnusable(
                    f"the {s} split is empty: {d / f'{cfg.splits[s]}.{cfg.src_lang}'} has no lines"
                )
        train_src, train_tgt, self.n_dropped["noise"] = drop_noise(*raw["train"])
        if self.n_dropped["noise"]:
            log.info("dropped %d training pairs with an empty or '@@' side", self.n_dropped["noise"])
        if cfg.tokenizer == "sentencepiece":
            self.src_tok = Tokenizer.train_sentencepiece(
                train_src, cfg.src_lang, cfg.spm_vocab_size, cfg.lowercase
            )
            self.tgt_tok = Tokenizer.train_sentencepiece(
                train_tgt, cfg.tgt_lang, cfg.spm_vocab_size, cfg.lowercase
            )
        else:
            self.src_tok = Tokenizer(cfg.tokenizer, cfg.src_lang, cfg.lowercase)
            self.tgt_tok = Tokenizer(cfg.tokenizer, cfg.tgt_lang, cfg.lowercase)
        train_s = [self.src_tok.tokenize(x) for x in train_src]
        train_t = [self.tgt_tok.tokenize(x) for x in train_tgt]
        self.src_vocab = Vocab.build(train_s, cfg.min_freq, cfg.max_vocab)
        self.tgt_vocab = Vocab.build(train_t, cfg.min_freq, cfg.max_vocab)
        if len(self.src_vocab) <= 4 or len(self.tgt_vocab) <= 4:
            raise DataUnusable(
                f"empty vocabulary (source {len(self.src_vocab) - 4}, target "
                f"{len(self.tgt_vocab) - 4} words) with data.min_freq={cfg.min_freq}: "
                f"lower data.min_freq or check the training files in {d}"
            )
        keep = [
            i
            for i, (s, t) in enumerate(zip(train_s, train_t))
            if 0 < len(s) <= cfg.max_len and 0 < len(t) <= cfg.max_len
        ]
        self.n_dropped["too_long"] = len(train_s) - len(keep)
        self.splits["train"] = Split(
            [train_src[i] for i in keep],
            [train_tgt[i] for i in keep],
            [self.src_vocab.encode(train_s[i]) + [EOS_ID] for i in keep],  # as encode_source
            [self.tgt_vocab.encode(train_t[i]) for i in keep],
        )
        for s in ("val", "test"):
            src, tgt = raw[s]
            self.splits[s] = Split(
                src,
                tgt,
                [encode_source(self.src_tok, self.src_vocab, x) for x in src],
                [self.tgt_vocab.encode(self.tgt_tok.tokenize(x)) for x in tgt],
            )
        log.info(
            "data %s: train %d pairs (%d too long dropped), val %d, test %d; vocab src %d tgt %d",
            cfg.name,
            len(keep),
            self.n_dropped["too_long"],
            len(raw["val"][0]),
            len(raw["test"][0]),
            len(self.src_vocab),
            len(self.tgt_vocab),
        )

    # ----------------------------------------------------------------------- loaders
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        data = self.splits[split]
        bs = self.cfg.batch_size if shuffle else self.cfg.eval_batch_size
        lengths = [(len(s), len(t)) for s, t in zip(data.src, data.tgt)]
        sampler = BucketBatchSampler(lengths, bs, shuffle, self.seed, self.cfg.bucket_pool)
        return DataLoader(_Indexed(data), batch_sampler=sampler, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ----------------------------------------------------------------------- saliency data
    def train_size(self) -> int:
        """Training sentences (after filtering): ``sample_examples(n)`` with n >= it takes all."""
        return len(self.splits["train"].src)

    def sample_examples(self, n: int, seed: int) -> list[dict[str, Tensor]]:
        """``n`` training sentences drawn without replacement (seeded), as batches of one."""
        train = self.splits["train"]
        idx = random.Random(seed).sample(range(len(train.src)), min(n, len(train.src)))
        return [collate([(i, train.src[i], train.tgt[i])]) for i in idx]

    def first_train_batches(self, amount: int | float) -> list[dict[str, Tensor]]:
        """The first training batches of epoch 0 (the order training sees them in).

        ``amount``: an int >= 1 is a number of batches; a float in (0, 1] a fraction of the
        training set (rounded up to whole batches).
        """
        loader = self.train_dataloader()
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise ValueError(f"training data amount {amount!r}: an int (batches) or a float in (0, 1]")
        if isinstance(amount, float):
            if not 0 < amount <= 1:
                raise ValueError(f"training data fraction {amount}: must be in (0, 1]")
            n = math.ceil(amount * len(loader))
        else:
            if amount < 1:
                raise ValueError(f"training batches {amount}: must be >= 1")
            n = min(amount, len(loader))
        out = []
        for b in loader:
            if len(out) == n:
                break
            out.append(b)
        return out

    def state(self) -> dict:
        """Plain-data state a checkpoint needs to translate new text."""
        return {
            "src_vocab": self.src_vocab.itos,
            "tgt_vocab": self.tgt_vocab.itos,
            "src_tok": self.src_tok.state(),
            "tgt_tok": self.tgt_tok.state(),
        }
