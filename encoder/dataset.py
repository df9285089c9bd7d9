"""A torch Dataset over the numpy slices (hashindex.encoder.data.SliceSet)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .data import SliceSet


class SliceDataset(Dataset):
    """Item i: {"image": (4, S, S) float32, "seg": (S, S) int64 or absent, "abnormal": int, "index": i}.

    The training loop (train.py) batches by indexing the arrays directly, which is faster on CPU;
    this is for users who bring their own DataLoader, samplers or transforms.
    """

    def __init__(self, slices: SliceSet, transform=None):
        if not isinstance(slices, SliceSet):
            raise TypeError(f"slices: expected a SliceSet, got {type(slices).__name__}")
        self.slices, self.transform = slices, transform

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> dict:
        item = {"image": torch.from_numpy(np.ascontiguousarray(self.slices.images[i])),
                "abnormal": int(self.slices.abnormal[i]), "index": int(i)}
        if self.slices.seg is not None:
            item["seg"] = torch.from_numpy(self.slices.seg[i].astype(np.int64))
        return self.transform(item) if self.transform is not None else item
