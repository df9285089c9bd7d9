"""The ``encoder`` dataset of ``hashindex bench`` (registered through the ``hashindex.bench_datasets``
entry point): abnormal-anatomy codes of the demo's phantom slices, from the shipped model. Needs
torch and the data extra; imported only when that dataset is asked for.
"""
from __future__ import annotations

import numpy as np


def encoder_codes(n: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(database, queries): up to ``n`` and ``nq`` codes drawn without overlap."""
    from .codes import CodeEncoder
    from .demo import DemoConfig, default_cache, demo_slices

    encoder = CodeEncoder.load()
    slices = demo_slices(default_cache(), DemoConfig(), encoder.image_size, lambda _: None)
    codes = encoder.encode(slices.images, present=slices.contrasts).abnormal_bits
    pick = np.random.default_rng(seed).permutation(len(codes))
    return codes[np.sort(pick[nq:nq + n])], codes[pick[:nq]]
