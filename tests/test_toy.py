from nmt_prune.data.toy import generate_toy_corpus

SIZES = {"train": 400, "val": 50, "test": 50}


def test_deterministic_and_seed_dependent():
    assert generate_toy_corpus(3, SIZES) == generate_toy_corpus(3, SIZES)
    assert generate_toy_corpus(3, SIZES)["train"] != generate_toy_corpus(4, SIZES)["train"]


def test_splits_disjoint_and_sized():
    c = generate_toy_corpus(0, SIZES)
    seen = [set(c[s][0]) for s in SIZES]
    for s, n in SIZES.items():
        assert len(c[s][0]) == len(c[s][1]) == n
        assert len(set(c[s][0])) == n
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


def test_grammar_reorders_and_agrees():
    src, tgt = generate_toy_corpus(0, {"train": 2000})["train"]
    dets = {"lo", "la", "los", "las", "un", "una", "unos", "unas"}
    verb_final = 0
    for s, t in zip(src, tgt):
        sw, tw = s.rstrip(".").split(), t.rstrip(".").split()
        first_det = next(w for w in tw if w in dets)  # the subject's postposed determiner
        assert tw[0] not in dets  # every clause starts with the subject noun
        if sw[0] == "some":  # indefinite plural subject -> plural determiner
            assert first_det in {"unos", "unas"}
        if "and" not in sw and "because" not in sw and "while" not in sw:
            verb_final += tw[-1].endswith(("t", "n"))
    assert verb_final > 0
    # adjectives follow the noun in the target: source "the ADJ NOUN" -> target "NOUN ADJ-o/a DET"
    vocab_src = {w for s in src for w in s.rstrip(".").split()}
    vocab_tgt = {w for t in tgt for w in t.rstrip(".").split()}
    assert 150 < len(vocab_src) < 1000 and 150 < len(vocab_tgt) < 1000
