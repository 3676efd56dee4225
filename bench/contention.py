"""A shared CPU: how much a 2-thread training job slows beside one busy single-thread process,
with OpenMP's default (active, spinning) wait policy, the passive one nmt_prune sets, and a
short spin before sleeping.

    python bench/contention.py [--threads 2] [--steps 20]

Each measurement is a fresh process (the wait policy is read when OpenMP starts, before torch is
imported) that times ``--steps`` training steps of the ``small`` model on synthetic batches of
Multi30k's shape, under each of ``SETTINGS``. "busy": one competing process spins on one core
(``while True: pass``) for the whole measurement. Prints, per setting, ms per step on a quiet
machine (and its ratio to the default's: what the setting costs when nothing competes) and
beside the busy process, and the slowdown between the two (the goal: about 2x at most, in
proportion to the cores taken). Run it on a quiet machine: any other load changes every figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

WORKER = r"""
import sys, time, torch
import torch.nn.functional as F
from nmt_prune.model import Seq2Seq
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
m = Seq2Seq(6224, 8024, emb_size=256, hidden_size=256, layers=2, dropout=0.3)
opt = torch.optim.Adam(m.parameters(), 1e-3)
src = torch.randint(4, 6224, (64, 14)); tgt = torch.randint(4, 8024, (64, 15))
lens = torch.full((64,), 14)
def step():
    states = m.attentional_states(tgt[:, :-1], m.encode(src, lens))
    loss = F.cross_entropy(m.generator(states.reshape(-1, states.shape[-1])), tgt[:, 1:].reshape(-1))
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(3): step()  # warm-up
t0 = time.perf_counter()
for _ in range(steps): step()
print((time.perf_counter() - t0) / steps)
"""


#: the OpenMP settings compared: the default (spin), passive (sleep at once), a short spin then sleep
SETTINGS = {
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin-200k": {"GOMP_SPINCOUNT": "200000"},
}


def measure(setting: str, busy: bool, threads: int, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(SETTINGS[setting])
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        p = subprocess.run(
            [sys.executable, "-c", WORKER, str(threads), str(steps)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return float(p.stdout.strip().splitlines()[-1])
    finally:
        if hog:
            hog.kill()
            hog.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    s = {(name, busy): measure(name, busy, args.threads, args.steps) for name in SETTINGS for busy in (0, 1)}
    for name in SETTINGS:
        quiet, busy = s[name, 0], s[name, 1]
        print(
            f"{name:10s} quiet {quiet * 1000:7.1f} ms/step ({quiet / s['active', 0]:.2f}x active's), "
            f"busy {busy * 1000:7.1f} ms/step: slowdown beside a busy process {busy / quiet:.2f}x"
        )


if __name__ == "__main__":
    main()
