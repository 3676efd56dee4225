"""Weight initialisation schemes (``init.scheme``): See et al.'s uniform, Kaiming and Xavier."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

INIT_SCHEMES = ("uniform", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal")


def init_weights(model: nn.Module, scheme: str, scale: float = 0.1, forget_bias: float | None = None) -> None:
    """Initialise every parameter of ``model`` in place.

    ``uniform``: U(-scale, scale) for all parameters, biases included (See et al. 2016 sect. 4.1,
    scale 0.1). ``kaiming_*`` (He et al. 2015, fan_in mode, gain 1 since LSTM/attention
    pre-activations are not ReLU): std = 1/sqrt(fan_in). ``xavier_*`` (Glorot & Bengio 2010):
    std = sqrt(2/(fan_in+fan_out)). Uniform variants use bound sqrt(3)*std. These apply to every
    matrix (embeddings as (V, E) with fan_in = E); biases are set to zero. LSTM matrices are
    treated per gate block (4 blocks of H rows), so fan_out is H, not 4H. Padding embedding rows
    are zeroed in every scheme.

    ``forget_bias``: if not None, every LSTM's forget-gate bias is then set so that b_ih + b_hh
    = forget_bias (Gers et al. 2000; Jozefowicz et al. 2015 sect. 3.2): with 1.0 the forget gates
    start near sigmoid(1) = 0.73 instead of 0.5, so memory and gradients survive more steps.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init.scheme={scheme!r}; valid choices: {INIT_SCHEMES}")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if scheme == "uniform":
                p.uniform_(-scale, scale)
            elif p.dim() < 2:
                p.zero_()
            else:
                is_lstm = "weight_ih" in name or "weight_hh" in name
                blocks = p.view(4, p.shape[0] // 4, p.shape[1]) if is_lstm else p.unsqueeze(0)
                for block in blocks:
                    _init_matrix(block, scheme)
        for module in model.modules():
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        if forget_bias is not None:
            for name, p in model.named_parameters():
                if name.rsplit(".", 1)[-1].startswith("bias_"):  # LSTM biases, gates i, f, g, o
                    H = p.shape[0] // 4
                    p[H : 2 * H] = forget_bias / 2  # split between b_ih and b_hh


def _init_matrix(w: Tensor, scheme: str) -> None:
    """Initialise one (fan_out, fan_in) matrix view in place."""
    fan_out, fan_in = w.shape
    if scheme.startswith("kaiming"):
        std = 1.0 / math.sqrt(fan_in)  # gain 1 (linear), as for LSTM pre-activations
    else:
        std = math.sqrt(2.0 / (fan_in + fan_out))
    if scheme.endswith("uniform"):
        bound = math.sqrt(3.0) * std
        w.uniform_(-bound, bound)
    else:
        w.normal_(0.0, std)
