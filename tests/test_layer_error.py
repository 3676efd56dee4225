"""nmt_prune.layer_error: the step-by-step re-run reproduces the model's own activations, and the
relative errors equal a direct computation."""

from __future__ import annotations

import math

import torch

from nmt_prune.data.datamodule import collate
from nmt_prune.init import init_weights
from nmt_prune.layer_error import layer_inputs, relative_errors
from nmt_prune.model import Seq2Seq


def _setup(seed=0):
    torch.manual_seed(seed)
    m = Seq2Seq(20, 18, emb_size=6, hidden_size=8, layers=2, dropout=0.3).double()
    init_weights(m, "uniform", 0.3)
    g = torch.Generator().manual_seed(seed)
    ex = []
    for i in range(5):  # sentences of different lengths: padding on both sides
        s = torch.randint(4, 20, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist() + [3]
        t = torch.randint(4, 18, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g).tolist()
        ex.append((i, s, t))
    return m, [collate(ex[:3]), collate(ex[3:])]


def test_the_rerun_reproduces_the_models_own_activations():
    m, batches = _setup()
    m.train()  # layer_inputs must switch dropout off itself, and restore the mode
    x = layer_inputs(m, batches)
    assert m.training
    m.eval()
    with torch.no_grad():
        memory = torch.cat([m.encode(b["src"], b["src_len"]).memory[b["src"] != 0] for b in batches])
        att = []  # the decoder's rows come step by step (time-major within a batch)
        for b in batches:
            states = m.attentional_states(b["tgt_in"], m.encode(b["src"], b["src_len"]))
            att.append(states.transpose(0, 1)[(b["tgt_in"] != 0).t()])
        att = torch.cat(att)
    torch.testing.assert_close(x["attn_in.weight"], memory)  # the encoder re-run, layer by layer
    torch.testing.assert_close(x["generator.weight"], att)  # the decoder re-run, step by step
    n_src = sum(int((b["src"] != 0).sum()) for b in batches)
    assert x["encoder.weight_hh_l1"].shape == (n_src, 8) and x["src_embed.weight"].shape == (n_src,)
    assert x["decoder.0.weight_ih"].shape[1] == 6 + 8  # input feeding: [y_{t-1}; h~_{t-1}]


def test_relative_errors_equal_a_direct_computation():
    m, batches = _setup(1)
    x = layer_inputs(m, batches)
    dense = {n: p.detach().clone() for n, p in m.named_parameters()}
    pruned = dict(dense)
    for name in ("generator.weight", "src_embed.weight"):
        w = dense[name]
        pruned[name] = w * (w.abs() > w.abs().median())  # half of it pruned
    res = relative_errors(dense, pruned, x, m.weight_classes())
    assert set(res["by_matrix"]) == {"generator.weight", "src_embed.weight"}  # unchanged ones skipped
    logits = x["generator.weight"] @ dense["generator.weight"].t()
    logits2 = x["generator.weight"] @ pruned["generator.weight"].t()
    expected = float((logits - logits2).norm() / logits.norm())
    assert math.isclose(res["by_matrix"]["generator.weight"], expected, rel_tol=1e-7)
    assert math.isclose(res["by_class"]["softmax"], expected, rel_tol=1e-7)  # its bias was not pruned
    rows = x["src_embed.weight"]
    e = dense["src_embed.weight"][rows]
    expected = float((e - pruned["src_embed.weight"][rows]).norm() / e.norm())
    assert math.isclose(res["by_class"]["src_embed"], expected, rel_tol=1e-7)


def test_the_rerun_reads_the_source_as_the_encoder_does_when_reversed():
    m, batches = _setup(2)
    m.reverse_source = True
    x = layer_inputs(m, batches)
    m.eval()
    with torch.no_grad():
        memory = torch.cat([m.encode(b["src"], b["src_len"]).memory[b["src"] != 0] for b in batches])
    torch.testing.assert_close(x["attn_in.weight"], memory)
