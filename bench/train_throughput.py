"""Training-step throughput: the project's LightningModule (through a Trainer) vs plain PyTorch
loops over the same model, batches and optimizer (Adam, clip 5), in one process.

    python bench/train_throughput.py [--data-root ../shared/data/multi30k] [--steps 60] [--threads 2]

Without --data-root, batches are synthetic with Multi30k's shape (vocab 6224/8024, batch 64,
sentence lengths drawn around Multi30k's means). Prints target tokens/s of both and the ratio.
"""

from __future__ import annotations

import argparse
import time

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from nmt_prune.data.datamodule import DataConfig, NMTDataModule, collate
from nmt_prune.data.text import PAD_ID
from nmt_prune.init import init_weights
from nmt_prune.module import NMTModule
from nmt_prune.runtime import keep_freed_memory

SMALL = {
    "emb_size": 256,
    "hidden_size": 256,
    "layers": 2,
    "dropout": 0.3,
    "attention": "general",
    "input_feeding": True,
}


def batches_and_state(args) -> tuple[list[dict], dict]:
    if args.data_root:
        cfg = DataConfig(
            name="multi30k",
            root=args.data_root,
            src_lang="en",
            tgt_lang="de",
            min_freq=2,
            splits={"train": "train", "val": "val", "test": "test_2016_flickr"},
            download=False,
            max_len=80,
        )
        dm = NMTDataModule(cfg, ".cache")
        dm.setup()
        it = iter(dm.train_dataloader())
        return [next(it) for _ in range(args.steps + args.warmup)], dm.state()
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(args.steps + args.warmup):
        n = int(torch.randint(8, 20, (1,), generator=g))
        ex = []
        for i in range(64):
            m = n + int(torch.randint(0, 3, (1,), generator=g))
            src = torch.randint(4, 6224, (n + 1,), generator=g).tolist()
            ex.append((i, src, torch.randint(4, 8024, (m,), generator=g).tolist()))
        out.append(collate(ex))
    itos = lambda n: ["<pad>", "<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(n - 4)]  # noqa: E731
    tok = {"kind": "moses", "lang": "en", "lowercase": False, "spm_model": None}
    return out, {"src_vocab": itos(6224), "tgt_vocab": itos(8024), "src_tok": tok, "tgt_tok": tok}


def make_module(state: dict, model: dict | None = None) -> NMTModule:
    torch.manual_seed(0)
    m = NMTModule(
        model=dict(model or SMALL),
        optim={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
        lr_schedule={"name": "none"},
        eval={},
        data_state=state,
        label_smoothing=0.0,
    )
    init_weights(m.model, "uniform")
    return m


def ntokens(batches: list[dict]) -> int:
    return sum(int((b["tgt_out"] != PAD_ID).sum()) for b in batches)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()  # CUDA work is asynchronous: time what has run, not what is queued


def plain_loop(
    batches: list[dict],
    warmup: int,
    state: dict,
    naive: bool,
    bf16: bool = False,
    model: dict | None = None,
    device: str = "cpu",
    prepare=None,
) -> float:
    """A hand-written training loop. ``naive``: full (B, T, V) logits and a mean loss, as most
    seq2seq code does; otherwise the module's own loss (softmax on real target positions only).
    ``bf16``: the forward under autocast to bfloat16 (what trainer.precision=bf16-mixed does).
    ``prepare(module)``, if given, runs before the loop (e.g. compiling its decoder step)."""
    module = make_module(state, model).train().to(device)
    if prepare is not None:
        prepare(module)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    batches = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]
    for i, b in enumerate(batches):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            if naive:
                logits = module.model(b["src"], b["src_len"], b["tgt_in"])
                loss = F.cross_entropy(logits.flatten(0, 1), b["tgt_out"].flatten(), ignore_index=PAD_ID)
            else:
                loss = module.nll(b, 0.0) / b["ntok"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
        opt.step()
    _sync(device)
    return ntokens(batches[warmup:]) / (time.perf_counter() - t0)


class _Clock(pl.Callback):
    def __init__(self, warmup: int, device: str = "cpu") -> None:
        self.warmup, self.device, self.t0, self.t1 = warmup, device, 0.0, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            _sync(self.device)
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx == trainer.num_training_batches - 1:
            _sync(self.device)
        self.t1 = time.perf_counter()


def lightning_loop(
    batches: list[dict],
    warmup: int,
    state: dict,
    model: dict | None = None,
    device: str = "cpu",
    precision: str = "32-true",
    callbacks: list | None = None,
) -> float:
    """The project's module through a Lightning Trainer (``device``: cpu or cuda; ``callbacks``
    e.g. the mask callback)."""
    module = make_module(state, model)
    clock = _Clock(warmup, device)
    trainer = pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=5.0,
        limit_val_batches=0,
        callbacks=[clock, *(callbacks or [])],
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return ntokens(batches[warmup:]) / (clock.t1 - clock.t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-root", default=None)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--default-malloc", action="store_true", help="skip keep_freed_memory()")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not args.default_malloc:
        keep_freed_memory()
    batches, state = batches_and_state(args)
    print(
        f"{args.steps} batches of 64 sentences, {ntokens(batches[args.warmup :])} target tokens, "
        f"threads={args.threads}, data={'multi30k' if args.data_root else 'synthetic'}, "
        f"malloc={'default' if args.default_malloc else 'keep_freed_memory'}"
    )
    naive = plain_loop(batches, args.warmup, state, naive=True)
    plain = plain_loop(batches, args.warmup, state, naive=False)
    lit = lightning_loop(batches, args.warmup, state)
    print(f"plain loop, full (B,T,V) logits : {naive:8.0f} target tokens/s")
    print(f"plain loop, module's loss       : {plain:8.0f} target tokens/s")
    print(f"NMTModule + Lightning Trainer   : {lit:8.0f} target tokens/s")
    print(f"ratio Lightning / plain (same loss): {lit / plain:.3f}")
    print(f"ratio Lightning / naive plain loop : {lit / naive:.3f}")


if __name__ == "__main__":
    main()
