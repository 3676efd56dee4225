"""LSTM encoder-decoder with Luong global attention (Luong, Pham & Manning 2015; See et al. 2016).

Shapes: B batch, S source length, T target length, E embedding size, H hidden size, V vocabulary.

The decoder's recurrent step is written out by hand instead of calling ``nn.LSTMCell`` so that the
parts that do not depend on the previous step are computed once per batch:
- the embedding half of the first decoder layer's input projection, for all T steps in one matmul;
- the attention keys ``W_a h_s`` (Luong "general") for all source positions;
- the softmax layer over all T attentional states at once.
Parameters keep their ordinary ``nn.LSTM`` / ``nn.LSTMCell`` names, so masks keyed by parameter
name, deepcopy and checkpoints see plain tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt_prune.names import ATTENTION_TYPES


@dataclass
class DecoderState:
    """Everything one decoder step needs; rows are sentences (or sentence x beam).

    h, c: per layer, shape (B, H). feed: previous attentional state h~, shape (B, H).
    memory: encoder outputs (B, S, H); keys: attention keys (B, S, H); mask_bias: (B, S) with 0 on
    real source positions and -inf on padding.
    """

    h: list[Tensor]
    c: list[Tensor]
    feed: Tensor
    memory: Tensor
    keys: Tensor
    mask_bias: Tensor

    def reorder_beams(self, index: Tensor) -> DecoderState:
        """Reorder rows among beams that share one source sentence (beam search after a step):
        only the recurrent state moves; memory, keys and mask_bias are the same for every beam of
        a sentence, so they stay where they are."""
        return DecoderState(
            [x.index_select(0, index) for x in self.h],
            [x.index_select(0, index) for x in self.c],
            self.feed.index_select(0, index),
            self.memory,
            self.keys,
            self.mask_bias,
        )

    def index_select(self, index: Tensor) -> DecoderState:
        """Reorder / repeat / drop rows (beam search)."""
        return DecoderState(
            [x.index_select(0, index) for x in self.h],
            [x.index_select(0, index) for x in self.c],
            self.feed.index_select(0, index),
            self.memory.index_select(0, index),
            self.keys.index_select(0, index),
            self.mask_bias.index_select(0, index),
        )


def _lstm_gates(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """LSTM cell update from pre-activations ``gates`` (B, 4H) in PyTorch's i, f, g, o order."""
    H = c.shape[1]
    sig = gates.sigmoid()
    g = gates[:, 2 * H : 3 * H].tanh()
    c = sig[:, H : 2 * H] * c + sig[:, :H] * g
    h = sig[:, 3 * H :] * c.tanh()
    return h, c


class Seq2Seq(nn.Module):
    """Encoder-decoder of See et al. 2016 sect. 3.1 (after Luong et al. 2015).

    Encoder: embeddings -> ``layers``-layer unidirectional LSTM. Decoder: embeddings ->
    ``layers``-layer LSTM, initialised with the encoder's final states, first layer fed
    [y_{t-1}; h~_{t-1}] when ``input_feeding`` (Luong sect. 3.3). Global attention (Luong eq. 8):
    score(h_t, h_s) = h_t^T W_a h_s ("general") or h_t^T h_s ("dot"); context c_t = sum_s a_ts h_s;
    attentional state h~_t = tanh(W_c [c_t; h_t]) (eq. 5); p(y_t) = softmax(W_s h~_t + b) (eq. 6).

    Dropout (Zaremba et al. 2014, as Luong and See use it) is applied to non-recurrent connections
    only: on source and target embeddings, between stacked LSTM layers, and on h~_t before the
    softmax layer. Not on recurrent paths (h, c, and the input-fed h~_{t-1}), and not on the
    encoder outputs that attention reads (as OpenNMT and JoeyNMT).
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        emb_size: int = 256,
        hidden_size: int = 256,
        layers: int = 2,
        dropout: float = 0.3,
        attention: str = "general",
        input_feeding: bool = True,
        pad_id: int = 0,
        reverse_source: bool = False,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_TYPES:
            raise ValueError(f"model.attention={attention!r}; valid choices: {ATTENTION_TYPES}")
        if layers < 1:
            raise ValueError(f"model.layers={layers}; must be >= 1")
        self.emb_size, self.hidden_size, self.layers = emb_size, hidden_size, layers
        self.attention_type, self.input_feeding, self.pad_id = attention, input_feeding, pad_id
        self.reverse_source = reverse_source
        self.src_embed = nn.Embedding(src_vocab, emb_size, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab, emb_size, padding_idx=pad_id)
        self.encoder = nn.LSTM(
            emb_size, hidden_size, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        dec_in = emb_size + (hidden_size if input_feeding else 0)
        self.decoder = nn.ModuleList(
            [nn.LSTMCell(dec_in if k == 0 else hidden_size, hidden_size) for k in range(layers)]
        )
        self.attn_in = nn.Linear(hidden_size, hidden_size, bias=False) if attention == "general" else None
        self.attn_out = nn.Linear(2 * hidden_size, hidden_size, bias=False)  # W_c
        self.generator = nn.Linear(hidden_size, tgt_vocab)  # W_s, the "softmax" class
        #: dropout probability at each site, keyed by the weight class whose inputs it drops
        #: (``dropout_sites``); all equal to ``dropout`` unless ``set_dropout`` changed them
        self.dropout_p: dict[str, float] = dict.fromkeys(self.dropout_sites(), dropout)

    # --------------------------------------------------------------------------- weight classes
    def weight_classes(self) -> dict[str, list[str]]:
        """See et al. 2016 sect. 3.2 weight classes -> parameter names (weights and biases).

        ``src_embed``, ``tgt_embed``, ``encoder.layer{k}`` and ``decoder.layer{k}`` (input and
        recurrent matrices of layer k, with their biases), ``attention`` (W_a if any, and W_c),
        ``softmax`` (W_s and its bias). Every parameter belongs to exactly one class.
        """
        classes: dict[str, list[str]] = {"src_embed": ["src_embed.weight"]}
        classes["tgt_embed"] = ["tgt_embed.weight"]
        for k in range(self.layers):
            classes[f"encoder.layer{k}"] = [
                f"encoder.{kind}_l{k}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
        for k in range(self.layers):
            classes[f"decoder.layer{k}"] = [
                f"decoder.{k}.{kind}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
        classes["attention"] = (["attn_in.weight"] if self.attn_in is not None else []) + ["attn_out.weight"]
        classes["softmax"] = ["generator.weight", "generator.bias"]
        return classes

    # --------------------------------------------------------------------------- dropout sites
    def dropout_sites(self) -> dict[str, tuple[str, slice]]:
        """Dropout site -> (parameter, input columns) whose connections it drops.

        A site is named by the weight class it feeds: ``encoder.layer0`` (source embeddings),
        ``encoder.layer{k}`` (between encoder layers), ``decoder.layer0`` (target embeddings,
        the embedding columns of W_ih only: input feeding is not dropped), ``decoder.layer{k}``
        (between decoder layers), ``softmax`` (h~_t). Used by Han et al.'s dropout adjustment.
        """
        sites = {}
        for k in range(self.layers):
            sites[f"encoder.layer{k}"] = (f"encoder.weight_ih_l{k}", slice(None))
        for k in range(self.layers):
            cols = slice(0, self.emb_size) if k == 0 else slice(None)
            sites[f"decoder.layer{k}"] = (f"decoder.{k}.weight_ih", cols)
        sites["softmax"] = ("generator.weight", slice(None))
        return sites

    def set_dropout(self, rates: dict[str, float]) -> None:
        """Set the dropout probability of some sites (``dropout_sites``).

        nn.LSTM has one dropout for all its inter-layer connections: the encoder's sites
        ``encoder.layer{k>=1}`` share the mean of their rates (exact for 2 layers).
        """
        unknown = sorted(set(rates) - set(self.dropout_p))
        if unknown:
            raise KeyError(f"unknown dropout sites {unknown}; valid: {list(self.dropout_p)}")
        self.dropout_p.update({k: float(v) for k, v in rates.items()})
        if self.layers > 1:
            inner = [self.dropout_p[f"encoder.layer{k}"] for k in range(1, self.layers)]
            self.encoder.dropout = sum(inner) / len(inner)

    def _drop(self, x: Tensor, site: str) -> Tensor:
        return F.dropout(x, self.dropout_p[site], self.training)

    # --------------------------------------------------------------------------- encoder
    def read_order(self, src: Tensor, src_len: Tensor) -> Tensor:
        """The source as the encoder reads it: with ``reverse_source`` each sentence's tokens in
        reverse order, padding left at the end (Sutskever et al. 2014 sect. 3.3; Luong et al. 2015
        Table 1, "+reverse", the model See et al. 2016 prune); else ``src`` itself. Attention
        scores every position alike, so only the encoder's reading order changes."""
        if not self.reverse_source:
            return src
        pos = torch.arange(src.shape[1], device=src.device)
        n = src_len.to(src.device).unsqueeze(1)
        return src.gather(1, torch.where(pos < n, n - 1 - pos, pos))

    def encode(self, src: Tensor, src_len: Tensor) -> DecoderState:
        """src: (B, S) token ids, src_len: (B,) lengths -> initial decoder state."""
        src = self.read_order(src, src_len)
        emb = self._drop(self.src_embed(src), "encoder.layer0")  # (B, S, E)
        packed = pack_padded_sequence(emb, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, c) = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, S, H)
        keys = self.attn_in(memory) if self.attn_in is not None else memory
        mask_bias = torch.zeros(src.shape, dtype=memory.dtype, device=src.device)
        mask_bias.masked_fill_(src == self.pad_id, float("-inf"))
        feed = memory.new_zeros(src.shape[0], self.hidden_size)
        return DecoderState(list(h.unbind(0)), list(c.unbind(0)), feed, memory, keys, mask_bias)

    # --------------------------------------------------------------------------- decoder
    def _fused_weights(self) -> list[tuple[Tensor, Tensor]]:
        """Per decoder layer: (W, b) with W = [W_ih(recurrent part) | W_hh] for one matmul per step.

        For layer 0 only the input-feeding columns of W_ih are included (the embedding columns are
        applied to all steps at once in ``decode``).
        """
        fused = []
        for k, cell in enumerate(self.decoder):
            w_in = cell.weight_ih[:, self.emb_size :] if k == 0 else cell.weight_ih
            fused.append((torch.cat([w_in, cell.weight_hh], 1).t(), cell.bias_ih + cell.bias_hh))
        return fused

    def _step(
        self, x0: Tensor, state: DecoderState, fused: list[tuple[Tensor, Tensor]]
    ) -> tuple[Tensor, DecoderState]:
        """One decoder step. x0: (B, 4H) layer-0 pre-activation from the embedding (bias included).

        Returns the attentional state h~_t (B, H) and the new state. h~_t is fed back undropped
        (input feeding is a recurrent connection; see the class docstring on dropout).
        """
        hs, cs = [], []
        inp = state.feed
        for k in range(self.layers):
            w, b = fused[k]
            if k == 0:
                rec = torch.cat([inp, state.h[0]], 1) if self.input_feeding else state.h[0]
                gates = torch.addmm(x0, rec, w)
            else:
                gates = torch.addmm(b, torch.cat([inp, state.h[k]], 1), w)
            h, c = _lstm_gates(gates, state.c[k])
            hs.append(h)
            cs.append(c)
            inp = self._drop(h, f"decoder.layer{k + 1}") if k < self.layers - 1 else h
        # Luong global attention, eq. 7-8
        scores = torch.baddbmm(state.mask_bias.unsqueeze(1), inp.unsqueeze(1), state.keys.transpose(1, 2))
        alpha = scores.softmax(-1)  # (B, 1, S)
        context = torch.bmm(alpha, state.memory).squeeze(1)  # (B, H)
        att = torch.tanh(self.attn_out(torch.cat([context, inp], 1)))  # h~_t
        return att, DecoderState(hs, cs, att, state.memory, state.keys, state.mask_bias)

    def _embed_proj(self, tgt_in: Tensor, fused: list[tuple[Tensor, Tensor]]) -> Tensor:
        """Layer-0 input pre-activations from target embeddings: (B, T) -> (B, T, 4H)."""
        emb = self._drop(self.tgt_embed(tgt_in), "decoder.layer0")
        w_emb = self.decoder[0].weight_ih[:, : self.emb_size]
        return torch.addmm(fused[0][1], emb.flatten(0, 1), w_emb.t()).view(*tgt_in.shape, -1)

    def attentional_states(self, tgt_in: Tensor, state: DecoderState) -> Tensor:
        """Teacher-forced decoding. tgt_in: (B, T) ids starting with BOS -> h~ (B, T, H)."""
        fused = self._fused_weights()
        x0 = self._embed_proj(tgt_in, fused)  # (B, T, 4H)
        outs = []
        for x0_t in x0.unbind(1):  # unbind, not x0[:, t]: its backward is one stack, not T zero-fills
            att, state = self._step(x0_t, state, fused)
            outs.append(att)
        return self._drop(torch.stack(outs, 1), "softmax")

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """(B, S), (B,), (B, T) -> logits (B, T, V)."""
        return self.generator(self.attentional_states(tgt_in, self.encode(src, src_len)))

    def step_log_probs(
        self, prev: Tensor, state: DecoderState, fused: list[tuple[Tensor, Tensor]] | None = None
    ) -> tuple[Tensor, DecoderState]:
        """Inference step: prev (B,) last tokens -> log-probabilities (B, V), new state.

        ``fused``: ``_fused_weights()`` computed once for a whole search (the weights do not
        change while decoding); None computes them here."""
        att, state = self.decode_step(prev, state, fused)
        return self.generator(att).log_softmax(-1), state

    def decode_step(
        self, prev: Tensor, state: DecoderState, fused: list[tuple[Tensor, Tensor]] | None = None
    ) -> tuple[Tensor, DecoderState]:
        """Inference step without the softmax layer: prev (B,) -> h~_t (B, H), new state (a search
        applies ``generator`` to the rows it still needs)."""
        fused = self._fused_weights() if fused is None else fused
        x0 = self._embed_proj(prev.unsqueeze(1), fused)[:, 0]
        return self._step(x0, state, fused)
