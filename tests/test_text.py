import pytest

from nmt_prune.data.text import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, Tokenizer, Vocab

SENTS = [
    "Two young, White males are outside near many bushes.",
    "A man in an orange hat starring at something.",
    'A girl says "hello" to the dog\'s owner (who is 5-years-old).',
]
SENTS_DE = [
    "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",
    'Ein Mädchen sagt "hallo" zum Besitzer (er ist 5 Jahre alt).',
]


@pytest.mark.parametrize("lang, sents", [("en", SENTS), ("de", SENTS_DE)])
def test_moses_round_trip(lang, sents):
    tok = Tokenizer("moses", lang)
    for s in sents:
        tokens = tok.tokenize(s)
        assert "," in tokens or "," not in s  # punctuation split off
        assert tok.detokenize(tokens) == s


def test_lowercase_option():
    assert Tokenizer("moses", "en", lowercase=True).tokenize("A Dog") == ["a", "dog"]
    assert Tokenizer("moses", "en").tokenize("A Dog") == ["A", "Dog"]


def test_sentencepiece_trains_round_trips_and_restores():
    lines = [f"{s} {i}" for i in range(200) for s in SENTS]
    tok = Tokenizer.train_sentencepiece(lines, "en", vocab_size=120)
    pieces = tok.tokenize(SENTS[0])
    assert len(pieces) > len(SENTS[0].split())  # subwords
    assert tok.detokenize(pieces) == SENTS[0]
    again = Tokenizer.from_state(tok.state())
    assert again.tokenize(SENTS[1]) == tok.tokenize(SENTS[1])


def test_unknown_tokenizer_names_choices():
    with pytest.raises(ValueError, match="moses"):
        Tokenizer("bpe", "en")


def test_vocab_min_freq_max_size_specials():
    sents = [["a", "b", "b", "c", "c", "c", "d"]]
    v = Vocab.build(sents, min_freq=2)
    assert v.itos[:4] == list(SPECIALS) and v.itos[4:] == ["c", "b"]
    assert Vocab.build(sents, max_size=1).itos[4:] == ["c"]
    assert v.encode(["c", "zzz"]) == [v.stoi["c"], UNK_ID]
    assert v.decode([BOS_ID, v.stoi["b"], PAD_ID, EOS_ID, v.stoi["c"]]) == ["b"]
    with pytest.raises(ValueError):
        Vocab(["x"])
