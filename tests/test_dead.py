"""Dead capacity counts exactly the rows, columns and units a hand-made mask leaves empty."""

from __future__ import annotations

import pytest
import torch

from nmt_prune.dead import dead_capacity, target_counts
from nmt_prune.model import Seq2Seq


def _model() -> Seq2Seq:
    return Seq2Seq(11, 13, emb_size=6, hidden_size=5, layers=2, dropout=0.0)


def test_counts_the_rows_columns_and_units_a_hand_made_mask_empties():
    model = _model()
    keep = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if p.dim() == 2}
    keep["generator.weight"][[0, 3]] = False  # two target words with only their bias
    keep["generator.weight"][7, :4] = False  # one weight of row 7 survives: alive
    keep["src_embed.weight"][5] = False  # a source word vanishes
    keep["decoder.0.weight_ih"][2] = False
    keep["decoder.0.weight_hh"][2] = False  # gate row 2 of decoder layer 0: no input left, dead
    keep["decoder.0.weight_ih"][4] = False  # row 4 keeps its recurrent weights: alive
    keep["encoder.weight_ih_l0"][:, 2] = False  # embedding dim 2 read by no encoder gate
    keep["attn_out.weight"][1] = False
    dead = dead_capacity(keep, model.weight_classes())
    bc = dead["by_class"]
    assert bc["softmax"] == {"units": "target words", "dead": 2, "total": 13, "fraction": 2 / 13}
    assert (bc["src_embed"]["dead"], bc["tgt_embed"]["dead"]) == (1, 0)
    assert bc["decoder.layer0"]["dead"] == 1 and bc["decoder.layer0"]["total"] == 20
    assert bc["encoder.layer0"]["dead"] == 0 and bc["decoder.layer1"]["dead"] == 0
    assert bc["attention"]["dead"] == 1 and bc["attention"]["total"] == 5
    bp = dead["by_param"]
    assert bp["encoder.weight_ih_l0"]["cols_empty"] == 1 and bp["encoder.weight_ih_l0"]["rows_empty"] == 0
    assert bp["decoder.0.weight_ih"]["rows_empty"] == 2 and bp["decoder.0.weight_hh"]["rows_empty"] == 1
    assert sum(v["rows_empty"] for v in bp.values()) == 2 + 1 + 2 + 1 + 1


def test_attention_key_units_count_the_empty_rows_of_w_a_and_flag_uniform_attention():
    model = _model()
    keep = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if p.dim() == 2}
    keep["attn_in.weight"][[1, 4]] = False
    keep["attn_in.weight"][2, 1:] = False  # one weight of row 2 survives
    keys = dead_capacity(keep, model.weight_classes())["attention_keys"]
    assert keys == {"units": "key units", "dead": 2, "total": 5, "fraction": 2 / 5, "uniform": False}
    keep["attn_in.weight"][:] = False
    assert dead_capacity(keep, model.weight_classes())["attention_keys"]["uniform"] is True
    # what "uniform" means: with W_a = 0 every key is 0, so every source position scores the same
    with torch.no_grad():
        model.attn_in.weight.mul_(keep["attn_in.weight"])
        state = model.encode(torch.tensor([[4, 5, 6, 3], [7, 3, 0, 0]]), torch.tensor([4, 2]))
    assert torch.count_nonzero(state.keys) == 0
    dot = _model_without_general_attention()
    assert "attention_keys" not in dead_capacity(
        {n: torch.ones_like(p, dtype=torch.bool) for n, p in dot.named_parameters()}, dot.weight_classes()
    )


def _model_without_general_attention() -> Seq2Seq:
    return Seq2Seq(11, 13, emb_size=6, hidden_size=5, layers=2, dropout=0.0, attention="dot")


def test_dead_token_share_counts_training_targets_and_eos():
    model = _model()
    keep = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if p.dim() == 2}
    keep["generator.weight"][[5, 3]] = False  # id 3 is </s> here
    targets = [[5, 6, 5], [7], [6, 6]]  # 6 words + 3 </s> = 9 tokens; 5 twice, </s> three times
    counts = target_counts(targets, 13, eos_id=3)
    assert counts[5] == 2 and counts[3] == 3 and counts.sum() == 9
    dead = dead_capacity(keep, model.weight_classes(), counts)
    assert dead["softmax_dead_token_share"] == pytest.approx(5 / 9)


def test_a_dense_model_has_no_dead_capacity():
    model = _model()
    keep = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters()}
    dead = dead_capacity(keep, model.weight_classes(), torch.ones(13, dtype=torch.long))
    assert all(v["dead"] == 0 for v in dead["by_class"].values()) and dead["softmax_dead_token_share"] == 0
    assert len(dead["by_class"]) == 8  # 2 embeddings, 2 + 2 LSTM layers, attention, softmax


def test_embedding_token_shares_weigh_empty_rows_by_the_tokens_each_embedding_reads():
    from types import SimpleNamespace

    from nmt_prune.data.text import BOS_ID, EOS_ID
    from nmt_prune.dead import dead_record

    model = _model()
    keep = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if p.dim() == 2}
    keep["src_embed.weight"][[5, EOS_ID]] = False  # a source word and the source </s>
    keep["tgt_embed.weight"][[BOS_ID, 6]] = False  # what the decoder reads first, and a word
    keep["generator.weight"][EOS_ID] = False
    # sources end with </s> (as the data module encodes them); targets are words only
    train = SimpleNamespace(src=[[5, 7, EOS_ID], [8, EOS_ID]], tgt=[[6, 6, 9], [9]])
    dead = dead_record(keep, model, train)
    assert dead["embed_dead_token_share"]["src_embed"] == pytest.approx(3 / 5)  # 5, </s>, </s>
    assert dead["embed_dead_token_share"]["tgt_embed"] == pytest.approx(4 / 6)  # <s> x2 and 6 x2 of 6
    assert dead["softmax_dead_token_share"] == pytest.approx(2 / 6)  # the two </s> of 4 words + 2
    assert dead["by_class"]["src_embed"]["dead"] == 2 and dead["by_class"]["tgt_embed"]["dead"] == 2
