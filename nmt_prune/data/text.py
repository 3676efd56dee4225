"""Tokenisers (Moses words via sacremoses, or sentencepiece subwords) and the vocabulary."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
TOKENIZERS = ("moses", "sentencepiece")


class Tokenizer:
    """Text <-> tokens for one language.

    ``moses``: sacremoses word tokenisation (See et al. 2016 use Moses-tokenised words), no
    escaping (so detokenised text matches the raw reference). ``sentencepiece``: a unigram model
    trained locally on the training split; its serialised proto is part of the tokenizer state so
    a checkpoint can rebuild it. Case is kept unless ``lowercase``.
    """

    def __init__(self, kind: str, lang: str, lowercase: bool = False, spm_model: bytes | None = None) -> None:
        if kind not in TOKENIZERS:
            raise ValueError(f"data.tokenizer={kind!r}; valid choices: {TOKENIZERS}")
        self.kind, self.lang, self.lowercase, self.spm_model = kind, lang, lowercase, spm_model
        if kind == "moses":
            from sacremoses import MosesDetokenizer, MosesTokenizer

            self._tok, self._detok = MosesTokenizer(lang), MosesDetokenizer(lang)
        else:
            if spm_model is None:
                raise ValueError("a sentencepiece tokenizer needs a trained model (spm_model)")
            import sentencepiece as spm

            self._spm = spm.SentencePieceProcessor(model_proto=spm_model)

    @classmethod
    def train_sentencepiece(
        cls, lines: list[str], lang: str, vocab_size: int, lowercase: bool = False
    ) -> Tokenizer:
        """Train a unigram sentencepiece model in memory on ``lines`` (the training split)."""
        import sentencepiece as spm

        buf = io.BytesIO()
        text = (line.lower() if lowercase else line for line in lines)
        spm.SentencePieceTrainer.train(
            sentence_iterator=text,
            model_writer=buf,
            vocab_size=vocab_size,
            model_type="unigram",
            character_coverage=1.0,
            hard_vocab_limit=False,
            minloglevel=2,
            num_threads=1,
        )
        return cls("sentencepiece", lang, lowercase, buf.getvalue())

    def tokenize(self, line: str) -> list[str]:
        if self.lowercase:
            line = line.lower()
        if self.kind == "moses":
            return self._tok.tokenize(line, escape=False)
        return self._spm.encode(line, out_type=str)

    def detokenize(self, tokens: list[str]) -> str:
        if self.kind == "moses":
            return self._detok.detokenize(tokens)
        return self._spm.decode(tokens)

    def state(self) -> dict:
        """Plain-data state (checkpoint-safe with ``weights_only=True``)."""
        return {
            "kind": self.kind,
            "lang": self.lang,
            "lowercase": self.lowercase,
            "spm_model": self.spm_model,
        }

    @classmethod
    def from_state(cls, state: dict) -> Tokenizer:
        return cls(state["kind"], state["lang"], state["lowercase"], state["spm_model"])


class Vocab:
    """Token <-> id. Ids 0..3 are pad, unk, bos, eos; the rest by descending frequency."""

    def __init__(self, itos: list[str]) -> None:
        if tuple(itos[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.itos = list(itos)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_freq: int = 1, max_size: int | None = None) -> Vocab:
        """Vocabulary of tokens seen at least ``min_freq`` times, at most ``max_size`` of them
        (specials not counted); ties in frequency are broken alphabetically (deterministic)."""
        counts = Counter(tok for sent in sentences for tok in sent)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
            key=lambda t: (-counts[t], t),
        )
        return cls(list(SPECIALS) + kept[:max_size])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.stoi.get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> tokens, stopping at EOS and skipping pad/bos."""
        out = []
        for i in ids:
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                out.append(self.itos[i])
        return out


def encode_source(tokenizer: Tokenizer, vocab: Vocab, line: str) -> list[int]:
    """Raw source line -> ids, EOS-terminated (the encoder sees where the sentence ends)."""
    return vocab.encode(tokenizer.tokenize(line)) + [EOS_ID]
