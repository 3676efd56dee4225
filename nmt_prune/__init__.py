"""Pruning experiments for LSTM encoder-decoder NMT.

Importing the package before torch sets OpenMP's wait policy to passive (unless the environment
sets one): with the default, OpenMP threads spin at every barrier, and a multi-threaded job
beside any other busy process slows many times over instead of in proportion to the cores it
lost (README, "Speed"; ``bench/contention.py``). It must be set before torch starts OpenMP:
``run.py`` and the ``python -m nmt_prune.*`` tools import this package first.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
