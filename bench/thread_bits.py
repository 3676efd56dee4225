"""Does the thread count change the numbers? One forward/backward of the `small` model's pieces
(a 2-layer LSTM 256, the 8,024-word softmax layer, a 8,000-word embedding) and dropout masks, at
1 and at 2 threads, same seed and inputs; prints whether each result is bit-identical.

    python bench/thread_bits.py

On this project's 2-core AMD EPYC machines (torch 2.13.0, AVX512 kernels) all came out identical
(2026-11-23), which is why lending threads to a dense training does not change its model. Another
CPU or BLAS may differ: run it there before comparing single runs across machines.
"""

import torch
import torch.nn.functional as F


def step(n: int, lstm, lin, emb, idx, x):
    torch.set_num_threads(n)
    torch.manual_seed(0)
    params = [*lstm.parameters(), *lin.parameters(), *emb.parameters()]
    for p in params:
        p.grad = None
    out, _ = lstm(x + emb(idx))
    loss = torch.log_softmax(lin(F.dropout(out, 0.2)), -1).mean()
    loss.backward()
    drop = F.dropout(torch.ones(64 * 30 * 256), 0.2)
    return [loss.detach(), drop, *(p.grad.clone() for p in params)]


def main() -> None:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(256, 256, 2, batch_first=True)
    lin, emb = torch.nn.Linear(256, 8024), torch.nn.Embedding(8000, 256)
    idx, x = torch.randint(0, 8000, (64, 30)), torch.randn(64, 30, 256)
    one, two = step(1, lstm, lin, emb, idx, x), step(2, lstm, lin, emb, idx, x)
    names = ["loss", "dropout mask"] + [f"grad {i}" for i in range(len(one) - 2)]
    same = [torch.equal(a, b) for a, b in zip(one, two)]
    print(f"cpu_capability {torch.backends.cpu.get_cpu_capability()}")
    for n, s in zip(names, same):
        print(f"{n}: {'identical' if s else 'DIFFERENT'}")
    print(f"1 vs 2 threads: {sum(same)} of {len(same)} bit-identical")


if __name__ == "__main__":
    main()
