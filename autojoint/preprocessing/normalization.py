"""Intensity normalisation as the plan prescribes, one scheme per channel."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autojoint.planning.schema import ChannelNormalization


def normalize(data: np.ndarray, schemes: Sequence[ChannelNormalization]) -> np.ndarray:
    """Return a float32 copy of ``data`` normalised channel by channel.

    ``ct``: clip to the dataset's foreground 0.5/99.5 percentiles, then subtract the dataset
    mean and divide by its std, so HU keep their meaning across scans. ``zscore``: per-image
    statistics, for modalities whose intensities are not calibrated.

    Shape:
        data: ``(C, Z, Y, X)``.

    Raises:
        ValueError: channel count and scheme count differ, or an unknown scheme.
    """
    if data.shape[0] != len(schemes):
        raise ValueError(f"image has {data.shape[0]} channels but the plan has {len(schemes)}.")
    out = np.empty(data.shape, dtype=np.float32)
    for c, scheme in enumerate(schemes):
        # in place in the output: a 512 x 512 x 300 CT is 300 MB per temporary array
        x = out[c]
        np.copyto(x, data[c], casting="unsafe")
        if scheme.scheme == "ct":
            np.clip(x, scheme.clip_low, scheme.clip_high, out=x)
            x -= scheme.mean
            x /= scheme.std
        elif scheme.scheme == "zscore":
            mean, std = x.mean(), max(float(x.std()), 1e-8)
            x -= mean
            x /= std
        else:
            raise ValueError(f"unknown normalisation scheme '{scheme.scheme}' (ct, zscore).")
    return out
