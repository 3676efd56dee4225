"""``loss.normalize``: the training loss over the batch's tokens (default) or over its sentences
(Luong et al. 2015, See et al. 2016: the loss their SGD at lr 1.0 with clipping at 5 assumes)."""

from __future__ import annotations

import warnings

import torch

from tests.conftest import tiny_module


def test_sentence_normalisation_scales_the_gradient_by_tokens_per_sentence(toy_dm):
    """Same weights, same batch: the gradient under ``sentence`` is ntok / B times the gradient
    under ``token`` (an SGD step at lr 1.0 with it is the per-token step at lr ntok / B), and the
    logged per-token loss is the same for both."""
    module = tiny_module(toy_dm)
    batch = next(iter(toy_dm.train_dataloader()))
    grads = {}
    for norm in ("token", "sentence"):
        module.hparams.loss_normalize = norm
        module.zero_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # self.log outside a Trainer
            module.training_step(batch, 0).backward()
        grads[norm] = [p.grad.clone() for p in module.parameters() if p.grad is not None]
    ratio = batch["ntok"] / batch["src"].size(0)
    assert ratio > 2  # toy sentences are several tokens long: the check can tell the two apart
    for g_tok, g_sent in zip(grads["token"], grads["sentence"], strict=True):
        torch.testing.assert_close(g_sent, ratio * g_tok, rtol=1e-5, atol=1e-7)
