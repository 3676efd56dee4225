"""A generated toy language pair: small, deterministic, offline, and not a copy task.

Source ("English-like", SVO): ``the red dogs see a small cat with the old man and ...``
Target (a made-up language, SOV with postpositions and agreement):
- adjectives follow the noun and agree with its gender and number (suffix -o/-a/-os/-as);
- the determiner is postposed (it closes the noun phrase, as the article does in Scandinavian
  or Romanian) and agrees with gender, number and definiteness (lo/la/los/las, un/una/...);
- nouns take a plural suffix; the verb agrees with the subject's number and moves to the end of
  its clause, after the object and any prepositional phrase, whose preposition becomes a
  postposition;
- two clauses may be joined by a conjunction; each is reordered on its own.

So a model needs attention (long-distance reordering), memory of the subject's number and the
noun's gender across the clause, and a lexicon of a few hundred words: pruning hurts measurably.
Everything derives from one seed (lexicon and sentences); splits are disjoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

GRAMMAR_VERSION = 2  # bump on any change to the generator: it keys the on-disk cache
_SYL_SRC = ["ba", "ko", "mi", "tu", "ran", "sel", "dor", "pi", "ve", "lu", "gan", "fo", "ter", "shi"]
_SYL_TGT = ["za", "qe", "vi", "no", "mur", "tal", "ki", "bo", "dre", "su", "len", "xo", "pa", "ri"]
_N_NOUNS, _N_ADJS, _N_VERBS = 60, 40, 40
_PREPS = ["with", "near", "behind", "under", "on", "for"]
_CONJS = ["and", "because", "while"]
_DET_TGT = {  # (definite, gender, plural) -> determiner
    (True, "m", False): "lo",
    (True, "f", False): "la",
    (True, "m", True): "los",
    (True, "f", True): "las",
    (False, "m", False): "un",
    (False, "f", False): "una",
    (False, "m", True): "unos",
    (False, "f", True): "unas",
}
_ADJ_SUFFIX = {("m", False): "o", ("f", False): "a", ("m", True): "os", ("f", True): "as"}


def _words(rng: random.Random, syllables: list[str], n: int, taken: set[str]) -> list[str]:
    """n distinct pseudo-words of 2-3 syllables, none in ``taken``."""
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(syllables) for _ in range(rng.choice((2, 3))))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


@dataclass
class _Lexicon:
    nouns: list[tuple[str, str, str]]  # (source stem, target stem, gender)
    adjs: list[tuple[str, str]]
    verbs: list[tuple[str, str]]
    preps: list[tuple[str, str]]
    conjs: list[tuple[str, str]]


def _lexicon(rng: random.Random) -> _Lexicon:
    src_taken = set(_PREPS + _CONJS + ["the", "a", "some"])
    tgt_taken = set(_DET_TGT.values())
    nouns = list(
        zip(
            _words(rng, _SYL_SRC, _N_NOUNS, src_taken),
            _words(rng, _SYL_TGT, _N_NOUNS, tgt_taken),
            [rng.choice("mf") for _ in range(_N_NOUNS)],
        )
    )
    adjs = list(zip(_words(rng, _SYL_SRC, _N_ADJS, src_taken), _words(rng, _SYL_TGT, _N_ADJS, tgt_taken)))
    verbs = list(zip(_words(rng, _SYL_SRC, _N_VERBS, src_taken), _words(rng, _SYL_TGT, _N_VERBS, tgt_taken)))
    preps = list(zip(_PREPS, _words(rng, _SYL_TGT, len(_PREPS), tgt_taken)))
    conjs = list(zip(_CONJS, _words(rng, _SYL_TGT, len(_CONJS), tgt_taken)))
    return _Lexicon(nouns, adjs, verbs, preps, conjs)


def _noun_phrase(rng: random.Random, lex: _Lexicon) -> tuple[list[str], list[str], bool]:
    """-> (source words, target words, plural)."""
    src_n, tgt_n, gender = rng.choice(lex.nouns)
    plural, definite = rng.random() < 0.4, rng.random() < 0.6
    adjs = rng.sample(lex.adjs, rng.choice((0, 0, 1, 1, 2)))
    src_det = "the" if definite else ("some" if plural else "a")
    src = [src_det] + [a for a, _ in adjs] + [src_n + ("s" if plural else "")]
    # Postposed determiner: agreement is decided after the noun is out. With a clause-initial
    # determiner, a left-to-right decoder must commit to the gender of a noun it has not yet
    # produced (behind the adjectives in the source): greedy search then guesses, and the toy
    # task stalled at ~85 BLEU.
    tgt = [tgt_n + ("i" if plural else "")] + [t + _ADJ_SUFFIX[(gender, plural)] for _, t in adjs]
    tgt.append(_DET_TGT[(definite, gender, plural)])
    return src, tgt, plural


def _clause(rng: random.Random, lex: _Lexicon) -> tuple[list[str], list[str]]:
    subj_s, subj_t, plural = _noun_phrase(rng, lex)
    obj_s, obj_t, _ = _noun_phrase(rng, lex)
    verb_s, verb_t = rng.choice(lex.verbs)
    src = subj_s + [verb_s + ("" if plural else "s")] + obj_s
    tgt = subj_t + obj_t
    if rng.random() < 0.4:
        prep_s, prep_t = rng.choice(lex.preps)
        pp_s, pp_t, _ = _noun_phrase(rng, lex)
        src += [prep_s] + pp_s
        tgt += pp_t + [prep_t]
    return src, tgt + [verb_t + ("n" if plural else "t")]


def _sentence(rng: random.Random, lex: _Lexicon) -> tuple[str, str]:
    src, tgt = _clause(rng, lex)
    if rng.random() < 0.3:
        conj_s, conj_t = rng.choice(lex.conjs)
        src2, tgt2 = _clause(rng, lex)
        src, tgt = src + [conj_s] + src2, tgt + [conj_t] + tgt2
    return " ".join(src) + ".", " ".join(tgt) + "."  # written text: Moses splits off the "."


def generate_toy_corpus(seed: int, sizes: dict[str, int]) -> dict[str, tuple[list[str], list[str]]]:
    """Generate disjoint splits {name: (source lines, target lines)} with ``sizes[name]`` pairs.

    Deterministic for ``seed``: the lexicon and every sentence come from one ``random.Random``.
    No source sentence occurs in two splits or twice in one split.
    """
    rng = random.Random(seed)
    lex = _lexicon(rng)
    seen: set[str] = set()
    out: dict[str, tuple[list[str], list[str]]] = {}
    for split, n in sizes.items():
        src_lines: list[str] = []
        tgt_lines: list[str] = []
        while len(src_lines) < n:
            s, t = _sentence(rng, lex)
            if s not in seen:
                seen.add(s)
                src_lines.append(s)
                tgt_lines.append(t)
        out[split] = (src_lines, tgt_lines)
    return out
