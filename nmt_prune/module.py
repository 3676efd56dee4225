"""LightningModule: loss, perplexity, BLEU, optimiser and learning-rate schedule."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor
from torchmetrics import MeanMetric

from nmt_prune.checkpoints import load_checkpoint
from nmt_prune.data.text import PAD_ID, Tokenizer, Vocab
from nmt_prune.metrics import bleu_scores
from nmt_prune.model import Seq2Seq
from nmt_prune.names import (  # noqa: F401  (re-exported)
    CONVERGENCE_RULES,
    LOSS_NORMALIZATIONS,
    LR_SCHEDULES,
    TRAIN_LOSS,
    VAL_PPL,
    VAL_PPL_AT_TARGET,
    WEIGHT_PENALTIES,
)
from nmt_prune.search import MAX_LEN_CAP, beam_search, greedy_search

log = logging.getLogger(__name__)


class NMTModule(pl.LightningModule):
    """Trains a ``Seq2Seq`` with token-level cross entropy (padding ignored).

    Hyperparameters are plain dicts (checkpoints load with ``weights_only=True``):
    ``model`` (Seq2Seq kwargs but the vocabulary sizes), ``optim`` (a Hydra ``_partial_``
    optimizer node, e.g. ``{_target_: torch.optim.Adam, _partial_: true, lr: 0.001}``),
    ``lr_schedule`` ({name: none | halving (x factor every ``every`` epochs from ``start_epoch``,
    See et al.'s SGD recipe) | plateau (x factor when val ppl stops improving) | converge |
    early_stop (callbacks/convergence.py: the fit runs until val ppl stops improving)}),
    ``label_smoothing``, ``weight_penalty`` ({type: none | l1 | l2, strength}: lambda sum |w| or
    lambda/2 sum w^2 over every weight matrix, embeddings included, biases not: the default
    prunable set; Han et al. 2015 sect. 3.1), ``loss_normalize`` (the summed token losses of a
    batch over its tokens, or over its sentences as Luong et al. 2015 and See et al. 2016 train:
    their SGD step is ~ mean target length times a per-token one), ``eval`` (decoding settings).
    The data state (vocabularies and tokenisers) travels in the checkpoint too, so a checkpoint
    alone can translate.
    """

    def __init__(
        self,
        model: dict,
        optim: dict,
        lr_schedule: dict,
        eval: dict,
        data_state: dict,
        label_smoothing: float = 0.0,
        weight_penalty: dict | None = None,
        loss_normalize: str = "token",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["data_state"], logger=False)
        if lr_schedule["name"] not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule.name={lr_schedule['name']!r}; valid choices: {LR_SCHEDULES}")
        wp = weight_penalty or {"type": "none", "strength": 0.0}
        if wp["type"] not in WEIGHT_PENALTIES:
            raise ValueError(
                f"loss.weight_penalty.type={wp['type']!r}; valid choices: {', '.join(WEIGHT_PENALTIES)}"
            )
        lam = wp["strength"]
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
            raise ValueError(f"loss.weight_penalty.strength={lam!r}; must be a number >= 0")
        if loss_normalize not in LOSS_NORMALIZATIONS:
            raise ValueError(
                f"loss.normalize={loss_normalize!r}; valid choices: {', '.join(LOSS_NORMALIZATIONS)}"
            )
        self.weight_penalty = wp
        self.data_state = data_state
        self.src_vocab, self.tgt_vocab = Vocab(data_state["src_vocab"]), Vocab(data_state["tgt_vocab"])
        self.src_tok = Tokenizer.from_state(data_state["src_tok"])
        self.tgt_tok = Tokenizer.from_state(data_state["tgt_tok"])
        self.model = Seq2Seq(len(self.src_vocab), len(self.tgt_vocab), pad_id=PAD_ID, **model)
        self.eval_nll = MeanMetric()  # token-weighted mean NLL of the current eval split
        self.hyps: dict[int, str] = {}
        self.decode_s = 0.0  # seconds spent in search (greedy/beam) on the current eval split
        self.history: list[dict[str, float]] = []
        self.fit_s_earlier, self._fit_t0 = 0.0, time.perf_counter()  # fit seconds of resumed attempts
        #: set by a pruning schedule: False until its final sparsity is reached; when not None the
        #: module logs ``val/ppl_at_target`` (inf before) so checkpoints are chosen among epochs
        #: at the final sparsity only
        self.at_target: bool | None = None
        self._tokens, self._epoch_t0, self._train_s = 0, 0.0, 0.0

    # ----------------------------------------------------------------------- training
    def nll(self, batch: dict[str, Tensor], smoothing: float) -> Tensor:
        """Sum of the batch's token losses (divide by ``batch["ntok"]`` for the mean).

        The softmax layer runs on real target positions only (padding rows of the (B*T, V)
        logits would be computed and then ignored).
        """
        states = self.model.attentional_states(
            batch["tgt_in"], self.model.encode(batch["src"], batch["src_len"])
        )  # (B, T, H)
        real = batch["tgt_out"] != PAD_ID
        logits = self.model.generator(states[real])  # (N, V)
        return F.cross_entropy(logits, batch["tgt_out"][real], reduction="sum", label_smoothing=smoothing)

    def penalty(self) -> Tensor | None:
        """The weight penalty term (None when off)."""
        kind, lam = self.weight_penalty["type"], self.weight_penalty["strength"]
        if kind == "none" or lam == 0:
            return None
        ws = [p for p in self.model.parameters() if p.dim() >= 2]
        if kind == "l1":
            return lam * sum(w.abs().sum() for w in ws)
        return 0.5 * lam * sum(w.pow(2).sum() for w in ws)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        total = self.nll(batch, self.hparams.label_smoothing)
        self._tokens += batch["ntok"]
        self.log(TRAIN_LOSS, total / batch["ntok"], prog_bar=True, batch_size=batch["ntok"])  # per token
        per = (
            batch["ntok"] if self.hparams.get("loss_normalize", "token") == "token" else batch["src"].size(0)
        )
        loss = total / per
        pen = self.penalty()
        if pen is not None:
            self.log("train/penalty", pen, batch_size=batch["ntok"])
            loss = loss + pen
        return loss

    def on_train_epoch_start(self) -> None:
        self._tokens, self._epoch_t0, self._train_s = 0, time.perf_counter(), 0.0
        # the LR this epoch trains with (Lightning steps epoch schedulers before validation ends)
        self._epoch_lr = self.optimizers().param_groups[0]["lr"]

    # ----------------------------------------------------------------------- evaluation
    def translate_batch(self, batch: dict[str, Tensor], beam_size: int) -> list[str]:
        """Decode a batch into detokenised strings (batch order)."""
        ev = self.hparams.eval
        cap = ev.get("max_len_cap", MAX_LEN_CAP)  # checkpoints from before the key: the default
        limits = (ev["max_len_ratio"], ev["max_len_extra"], cap)
        if beam_size == 1:
            ids = greedy_search(self.model, batch["src"], batch["src_len"], *limits)
        else:
            ids = beam_search(
                self.model, batch["src"], batch["src_len"], beam_size, ev["length_penalty"], *limits
            )
        return [self.tgt_tok.detokenize(self.tgt_vocab.decode(row)) for row in ids.tolist()]

    def _eval_step(self, batch: dict[str, Tensor], beam_size: int | None) -> None:
        self.eval_nll.update(self.nll(batch, 0.0) / batch["ntok"], weight=batch["ntok"])
        if beam_size:
            t0 = time.perf_counter()
            for i, hyp in zip(batch["idx"].tolist(), self.translate_batch(batch, beam_size)):
                self.hyps[i] = hyp
            self.decode_s += time.perf_counter() - t0

    def _eval_end(self, stage: str, refs: list[str]) -> dict[str, float]:
        nll = float(self.eval_nll.compute())
        self.eval_nll.reset()
        metrics = {f"{stage}/loss": nll, f"{stage}/ppl": math.exp(min(nll, 50.0))}
        if self.hyps:  # all lines, or those decoded under trainer.limit_*_batches
            order = sorted(self.hyps)
            hyps = [self.hyps[i] for i in order]
            scores = bleu_scores(hyps, [refs[i] for i in order], self.tgt_tok.tokenize)
            metrics.update(
                {
                    f"{stage}/bleu": scores["bleu"],
                    f"{stage}/bleu_lc": scores["bleu_lc"],
                    f"{stage}/bleu_tok_lc": scores["bleu_tok_lc"],
                }
            )
            self.last_hyps, self.last_signature = hyps, scores["signature"]
        metrics[f"{stage}/decode_s"] = self.decode_s
        if stage == "val" and self.at_target is not None:
            metrics[VAL_PPL_AT_TARGET] = metrics[VAL_PPL] if self.at_target else math.inf
        self.hyps, self.decode_s = {}, 0.0
        self.log_dict(metrics, prog_bar=True)
        return metrics

    def _fitting(self) -> bool:
        return self.trainer.state.fn == "fit" and not self.trainer.sanity_checking

    def on_validation_epoch_start(self) -> None:
        if self._fitting():
            self._train_s = time.perf_counter() - self._epoch_t0
        self._val_t0 = time.perf_counter()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        ev = self.hparams.eval
        self._eval_step(batch, ev["val_beam_size"] if ev["val_bleu"] else None)

    def on_validation_epoch_end(self) -> None:
        metrics = self._eval_end("val", self.trainer.datamodule.splits["val"].tgt_raw)
        if not self._fitting():
            return
        train_s = self._train_s or time.perf_counter() - self._epoch_t0
        row = {
            "epoch": self.current_epoch,
            "train_s": train_s,
            "tok_per_s": self._tokens / train_s,
            "val_s": time.perf_counter() - self._val_t0,
            "lr": self._epoch_lr,
            **{k.replace("/", "_"): v for k, v in metrics.items()},
        }
        self.history.append(row)
        bleu = f", val BLEU {row['val_bleu']:.2f}" if "val_bleu" in row else ""
        log.info(
            "epoch %d: train %.1f s (%.0f tok/s), lr %.3g, val ppl %.3f%s",
            row["epoch"],
            train_s,
            row["tok_per_s"],
            row["lr"],
            row["val_ppl"],
            bleu,
        )
        log.debug(
            "epoch %d: %s", row["epoch"], ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch")
        )
        self.log_dict({"train/epoch_s": train_s, "train/tok_per_s": row["tok_per_s"]})

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.hparams.eval["beam_size"])

    def on_test_epoch_end(self) -> None:
        self._eval_end("test", self.trainer.datamodule.splits["test"].tgt_raw)

    @torch.no_grad()
    def split_ppl(self, loader) -> float:
        """Perplexity over a data loader's batches, as validation computes it, without a Trainer
        (dropout off while it runs)."""
        was = self.training
        self.eval()
        nll, ntok = 0.0, 0
        for batch in loader:
            nll, ntok = nll + float(self.nll(batch, 0.0)), ntok + batch["ntok"]
        self.train(was)
        return math.exp(min(nll / ntok, 50.0))

    # ----------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> Any:
        opt = instantiate(self.hparams.optim)(self.parameters())
        sched = self.hparams.lr_schedule
        if sched["name"] == "none" or sched["name"] in CONVERGENCE_RULES:
            return opt  # convergence rules set the LR from a callback
        if sched["name"] == "halving":
            # x factor at start_epoch and every `every` epochs after: a function of the epoch alone,
            # not of trainer.max_epochs (milestones fixed at the start would not survive raising the
            # cap of a resumed fit, nmt_prune/resume.py); factor**k is exact for factor 0.5
            start, every, factor = sched["start_epoch"], sched["every"], sched["factor"]
            s = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda e: factor ** (0 if e < start else (e - start) // every + 1)
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "interval": "epoch"}}
        s = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=sched["factor"], patience=sched["patience"]
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "monitor": VAL_PPL}}

    # ----------------------------------------------------------------------- checkpoints
    def on_fit_start(self) -> None:
        self._fit_t0 = time.perf_counter()

    def fit_s(self) -> float:
        """Seconds this fit has run, the earlier attempts it resumed included (up to their last
        checkpoint: the time after it was lost with the attempt)."""
        return self.fit_s_earlier + time.perf_counter() - self._fit_t0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["data_state"] = self.data_state
        checkpoint["history"] = self.history
        if self.trainer.state.fn == "fit":
            checkpoint["fit_s"] = self.fit_s()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("history", []))
        self.fit_s_earlier = float(checkpoint.get("fit_s", 0.0))

    @classmethod
    def from_checkpoint(cls, path: str, map_location: str = "cpu") -> NMTModule:
        """Rebuild a module (model, vocabularies, tokenisers) from a checkpoint for inference.

        Loads with ``weights_only=True``; raises a clear error if the file is not one of ours.
        """
        ckpt = load_checkpoint(path, "checkpoint", map_location)
        if "data_state" not in ckpt or "hyper_parameters" not in ckpt:
            raise ValueError(f"{path} is not an nmt-prune checkpoint (no data_state/hyper_parameters)")
        module = cls(data_state=ckpt["data_state"], **ckpt["hyper_parameters"])
        module.load_state_dict(ckpt["state_dict"])
        return module.eval()
