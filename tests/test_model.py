import math

import pytest
import torch
from torch import nn

from nmt_prune.init import INIT_SCHEMES, init_weights
from nmt_prune.model import Seq2Seq
from nmt_prune.names import class_names


def _model(**kw) -> Seq2Seq:
    torch.manual_seed(0)
    m = Seq2Seq(40, 50, emb_size=8, hidden_size=12, layers=kw.pop("layers", 2), dropout=0.0, **kw)
    init_weights(m, "uniform")
    return m.eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 40, (3, 7), generator=g)
    src[1, 5:] = 0
    return src, torch.tensor([7, 5, 7]), torch.randint(4, 50, (3, 6), generator=g)


def _reference_logits(m: Seq2Seq, src, src_len, tgt):
    """Luong et al. 2015 written naively with nn.LSTMCell calls, masks by -inf, one step at a time."""
    st = m.encode(src, src_len)
    h, c = list(st.h), list(st.c)
    feed = torch.zeros(src.shape[0], m.hidden_size)
    logits = []
    for t in range(tgt.shape[1]):
        emb = m.tgt_embed(tgt[:, t])
        inp = torch.cat([emb, feed], 1) if m.input_feeding else emb
        for k, cell in enumerate(m.decoder):
            h[k], c[k] = cell(inp, (h[k], c[k]))
            inp = h[k]
        keys = m.attn_in(st.memory) if m.attn_in is not None else st.memory
        score = torch.einsum("bh,bsh->bs", inp, keys).masked_fill(src == 0, float("-inf"))
        ctx = torch.einsum("bs,bsh->bh", score.softmax(-1), st.memory)
        feed = torch.tanh(m.attn_out(torch.cat([ctx, inp], 1)))
        logits.append(m.generator(feed))
    return torch.stack(logits, 1)


@pytest.mark.parametrize("attention", ["general", "dot"])
@pytest.mark.parametrize("input_feeding", [True, False])
@pytest.mark.parametrize("layers", [1, 3])
def test_forward_equals_naive_reference(attention, input_feeding, layers):
    m = _model(attention=attention, input_feeding=input_feeding, layers=layers)
    src, sl, tgt = _batch()
    out = m(src, sl, tgt)
    assert out.shape == (3, 6, 50)
    torch.testing.assert_close(out, _reference_logits(m, src, sl, tgt))


def test_encoder_ignores_padding():
    m = _model()
    src, sl, tgt = _batch()
    alone = m(src[1:2, :5], sl[1:2], tgt[1:2])
    padded = m(src, sl, tgt)[1:2]
    torch.testing.assert_close(alone, padded)


def test_step_log_probs_matches_teacher_forcing():
    m = _model()
    src, sl, tgt = _batch()
    full = m(src, sl, tgt).log_softmax(-1)
    state = m.encode(src, sl)
    for t in range(tgt.shape[1]):
        logp, state = m.step_log_probs(tgt[:, t], state)
        torch.testing.assert_close(logp, full[:, t])


@pytest.mark.parametrize("layers", [1, 2, 4])
def test_weight_classes_cover_every_parameter_once(layers):
    m = _model(layers=layers)
    classes = m.weight_classes()
    assert len(classes) == 2 * layers + 4  # See et al.: 4 layers -> 12 classes
    assert list(classes) == class_names(layers)  # the names the config checks use, in order
    names = [n for ns in classes.values() for n in ns]
    assert sorted(names) == sorted(n for n, _ in m.named_parameters())
    assert len(names) == len(set(names))
    assert classes["encoder.layer0"][:2] == ["encoder.weight_ih_l0", "encoder.weight_hh_l0"]


def test_unknown_attention_names_choices():
    with pytest.raises(ValueError, match="general"):
        Seq2Seq(10, 10, attention="concat")


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_init_statistics(scheme):
    torch.manual_seed(0)
    m = Seq2Seq(3000, 3000, emb_size=256, hidden_size=256, layers=1, dropout=0.0)
    init_weights(m, scheme)
    w = m.encoder.weight_hh_l0.detach()  # 4 blocks of (256, 256)
    fan_in, fan_out = 256, 256
    if scheme == "uniform":
        assert w.abs().max() <= 0.1 and abs(w.std().item() - 0.1 / math.sqrt(3)) < 0.002
        assert m.encoder.bias_ih_l0.abs().max() <= 0.1
        return
    expected = 1 / math.sqrt(fan_in) if scheme.startswith("kaiming") else math.sqrt(2 / (fan_in + fan_out))
    assert abs(w.std().item() / expected - 1) < 0.02
    assert abs(w.mean().item()) < 0.01 * expected * 10
    if scheme.endswith("uniform"):
        assert w.abs().max() <= math.sqrt(3) * expected + 1e-6
    assert torch.count_nonzero(m.encoder.bias_ih_l0) == 0
    assert torch.count_nonzero(m.src_embed.weight[0]) == 0  # padding row


def test_unknown_init_names_choices():
    with pytest.raises(ValueError, match="xavier_uniform"):
        init_weights(nn.Linear(2, 2), "orthogonal")


@pytest.mark.parametrize("scheme", ["uniform", "xavier_uniform"])
def test_forget_bias_sets_every_lstm_forget_gate(scheme):
    m = Seq2Seq(20, 20, emb_size=8, hidden_size=6, layers=2, dropout=0.0)
    init_weights(m, scheme, forget_bias=1.0)
    params = dict(m.named_parameters())
    pairs = [(f"encoder.bias_ih_l{k}", f"encoder.bias_hh_l{k}") for k in range(2)]
    pairs += [(f"decoder.{k}.bias_ih", f"decoder.{k}.bias_hh") for k in range(2)]
    for ih, hh in pairs:
        total = params[ih] + params[hh]
        torch.testing.assert_close(total[6:12], torch.ones(6))  # forget gate block
        if scheme == "xavier_uniform":
            assert torch.count_nonzero(total[:6]) == 0 and torch.count_nonzero(total[12:]) == 0


def test_reverse_source_reads_each_sentence_backwards_and_nothing_else():
    """model.reverse_source: the model equals the plain one fed each sentence reversed by hand
    (padding left at the end): same encoder states in reversed positions, same logits."""
    src, src_len, tgt = _batch()
    plain, rev = _model(), _model(reverse_source=True)
    rev.load_state_dict(plain.state_dict())
    by_hand = src.clone()
    for b, n in enumerate(src_len.tolist()):
        by_hand[b, :n] = src[b, :n].flip(0)
    assert torch.equal(rev.read_order(src, src_len), by_hand)
    assert torch.equal(by_hand[1, 5:], src[1, 5:])  # the padding stays where it was
    with torch.no_grad():
        torch.testing.assert_close(rev(src, src_len, tgt), plain(by_hand, src_len, tgt), rtol=0, atol=0)
        assert not torch.allclose(rev(src, src_len, tgt), plain(src, src_len, tgt))
    assert torch.equal(plain.read_order(src, src_len), src)  # off: the source as it is
