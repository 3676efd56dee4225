import pytest
import torch

from nmt_prune.data.text import EOS_ID, PAD_ID
from nmt_prune.init import init_weights
from nmt_prune.model import Seq2Seq
from nmt_prune.search import beam_search, greedy_search, row_topk


def _setup(seed=0):
    torch.manual_seed(seed)
    m = Seq2Seq(30, 12, emb_size=8, hidden_size=16, layers=2, dropout=0.0)
    init_weights(m, "uniform", scale=0.5)  # peaky distributions so EOS comes early
    m.eval()
    src = torch.randint(4, 30, (6, 5))
    src[2, 3:] = PAD_ID
    return m, src, torch.tensor([5, 5, 3, 5, 5, 5])


def _trim(row: list[int]) -> list[int]:
    return row[: row.index(EOS_ID) + 1] if EOS_ID in row else row


def _score(m, src, sl, ids: torch.Tensor) -> torch.Tensor:
    """log p(Y|X) of each row of ids (up to and including EOS)."""
    tgt_in = torch.cat([torch.full((ids.shape[0], 1), 2), ids[:, :-1]], 1)
    logp = m(src, sl, tgt_in.clamp(min=0)).log_softmax(-1).gather(2, ids.unsqueeze(2)).squeeze(2)
    keep = torch.ones_like(ids, dtype=torch.bool)
    for b, row in enumerate(ids.tolist()):
        n = len(_trim(row))
        keep[b, n:] = False
    return (logp * keep).sum(1)


def test_beam_one_equals_greedy():
    for seed in range(3):
        m, src, sl = _setup(seed)
        g = greedy_search(m, src, sl, max_len_extra=6)
        b = beam_search(m, src, sl, beam_size=1, alpha=0.0, max_len_extra=6)
        assert [_trim(r) for r in g.tolist()] == [_trim(r) for r in b.tolist()]


def test_wider_beam_never_scores_worse_than_greedy():
    for seed in range(3):
        m, src, sl = _setup(seed)
        g = greedy_search(m, src, sl, max_len_extra=6)
        b = beam_search(m, src, sl, beam_size=6, alpha=0.0, max_len_extra=6)
        with torch.no_grad():
            sg, sb = _score(m, src, sl, g), _score(m, src, sl, b)
        finished = [EOS_ID in r for r in g.tolist()]
        for i, done in enumerate(finished):
            if done:
                assert sb[i] >= sg[i] - 1e-5


def test_beam_output_is_padded_after_eos():
    m, src, sl = _setup()
    b = beam_search(m, src, sl, beam_size=4, max_len_extra=6)
    for row in b.tolist():
        if EOS_ID in row:
            assert all(t == PAD_ID for t in row[row.index(EOS_ID) + 1 :])


def test_translation_does_not_depend_on_batchmates():
    m, src, sl = _setup(1)
    for search in (
        lambda s, n: greedy_search(m, s, n, max_len_extra=6),
        lambda s, n: beam_search(m, s, n, beam_size=3, max_len_extra=6),
    ):
        together = [_trim(r) for r in search(src, sl).tolist()]
        alone = [_trim(search(src[i : i + 1, : int(sl[i])], sl[i : i + 1]).tolist()[0]) for i in range(6)]
        assert together == alone


def test_every_hypothesis_respects_its_own_length_limit():
    m, src, sl = _setup(2)
    sl = torch.tensor([5, 5, 3, 5, 5, 5])
    for out in (greedy_search(m, src, sl, 1.0, 1), beam_search(m, src, sl, 3, 1.0, 1.0, 1)):
        for row, n in zip(out.tolist(), sl.tolist()):
            assert EOS_ID in row[: n + 1]  # limit = 1.0 * |x| + 1 tokens, EOS included


def _reference_search():
    """The plain beam search kept in bench/decode_speed.py (every tensor follows every step)."""
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("decode_speed", ROOT / "bench" / "decode_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.reference_beam_search


def test_beam_search_finds_the_hypotheses_of_the_plain_formulation():
    """Sentences finish at different steps, leave the batch, hit their length limits; the beams
    of the fast search are those of the plain one, token for token."""
    reference = _reference_search()
    for seed in range(6):
        torch.manual_seed(seed)
        m = Seq2Seq(30, 14, emb_size=8, hidden_size=16, layers=2, dropout=0.0)
        init_weights(m, "uniform", scale=0.3 + 0.1 * seed)
        m.eval()
        src = torch.randint(4, 30, (9, 7))
        sl = torch.tensor([7, 1, 3, 7, 5, 2, 6, 7, 4])
        for b, n in enumerate(sl.tolist()):
            src[b, n:] = PAD_ID
        for k, alpha, extra in ((5, 1.0, 5), (3, 0.0, 2), (2, 0.6, 9), (1, 1.0, 3)):
            fast = beam_search(m, src, sl, k, alpha, 1.5, extra)
            plain = reference(m, src, sl, k, alpha, 1.5, extra)
            assert [_trim(r) for r in fast.tolist()] == [_trim(r) for r in plain.tolist()], (seed, k)


def test_no_hypothesis_outgrows_the_absolute_cap():
    """A 1,000-token source line must not decode for 1,500 steps: ``max_len_cap`` bounds it."""
    torch.manual_seed(0)
    m = Seq2Seq(30, 12, emb_size=8, hidden_size=16, layers=1, dropout=0.0).eval()
    src = torch.randint(4, 30, (2, 1000))
    sl = torch.tensor([1000, 1000])
    with torch.no_grad():
        m.generator.bias[EOS_ID] = -1e4  # never ends by itself
    for out in (
        greedy_search(m, src, sl, 1.5, 5, max_len_cap=12),
        beam_search(m, src, sl, 3, 1.0, 1.5, 5, 12),
    ):
        assert out.shape[1] <= 12
        assert all(EOS_ID in row for row in out.tolist())  # forced to end at the cap


@pytest.mark.parametrize("width", [7, 300, 321, 8024])
def test_row_topk_selects_what_topk_selects(width):
    """Against torch.topk: distinct values (indices equal too), rows of -inf with one finite entry
    (a hypothesis at its length limit), and ties (the values equal, each index holds its value)."""
    g = torch.Generator().manual_seed(width)
    x = torch.randn(50, width, generator=g)
    x[:10] = float("-inf")
    x[torch.arange(10), torch.randint(width, (10,), generator=g)] = 0.5
    for k in (1, 5):
        v, i = row_topk(x, k)
        ref_v, ref_i = x.topk(k, dim=1)
        assert torch.equal(v, ref_v) and torch.equal(i[10:], ref_i[10:])
        assert torch.equal(x.gather(1, i), v)
    ties = torch.randint(0, 4, (20, width), generator=g).float()
    v, i = row_topk(ties, 5)
    assert torch.equal(v, ties.topk(5, dim=1).values) and torch.equal(ties.gather(1, i), v)
    assert all(len(set(r.tolist())) == 5 for r in i)  # five distinct entries of the row
