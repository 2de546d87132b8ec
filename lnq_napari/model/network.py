"""The segmentation network: a compact anisotropic 3D U-Net, built only from known architecture names."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lnq_napari.errors import LNQError


def _conv_block(cin: int, cout: int, kernel: Sequence[int]) -> nn.Sequential:
    pad = tuple(k // 2 for k in kernel)
    layers = []
    for i in range(2):
        layers += [
            nn.Conv3d(cin if i == 0 else cout, cout, tuple(kernel), padding=pad, bias=False),
            nn.InstanceNorm3d(cout, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        ]
    return nn.Sequential(*layers)


class UNet3D(nn.Module):
    """A plain 3D U-Net: double conv + instance norm + leaky ReLU per level, strided down, transposed up.

    ``strides`` are (z, y, x) per down-step (len(features) - 1 of them); ``kernels`` per level.
    The default first step pools in-plane only, for CT at ~3 mm slices and ~1.5 mm pixels.
    Output: ``out_channels`` logits at the input resolution.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[Sequence[int]] = ((1, 2, 2), (2, 2, 2), (2, 2, 2)),
        kernels: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        features = [int(f) for f in features]
        strides = [tuple(int(s) for s in st) for st in strides]
        if len(strides) != len(features) - 1:
            raise ValueError("need one stride per down-step (len(features) - 1)")
        kernels = [tuple(k) for k in kernels] if kernels else [(3, 3, 3)] * len(features)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for level, f in enumerate(features):
            cin = in_channels if level == 0 else f
            self.encoders.append(_conv_block(cin, f, kernels[level]))
            if level < len(strides):
                st = strides[level]
                self.downs.append(nn.Conv3d(f, features[level + 1], st, stride=st, bias=False))
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in range(len(features) - 2, -1, -1):
            st = strides[level]
            self.ups.append(
                nn.ConvTranspose3d(features[level + 1], features[level], st, stride=st, bias=False)
            )
            self.decoders.append(_conv_block(2 * features[level], features[level], kernels[level]))
        self.head = nn.Conv3d(features[0], out_channels, 1)
        self.total_stride = tuple(
            int(torch.tensor([s[d] for s in strides]).prod()) for d in range(3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, enc in enumerate(self.encoders):
            if level > 0:
                x = self.downs[level - 1](x)
            x = enc(x)
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.ups, self.decoders):
            x = up(x)
            x = dec(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


ARCHITECTURES: dict[str, type[nn.Module]] = {"unet3d": UNet3D}


def build_network(name: str, kwargs: dict | None = None) -> nn.Module:
    """Build a network from a known architecture name and JSON-safe keyword arguments."""
    if name not in ARCHITECTURES:
        raise LNQError(
            f"unknown model architecture {name!r}; this version knows {sorted(ARCHITECTURES)} "
            "- use a model made for lnq-napari"
        )
    try:
        return ARCHITECTURES[name](**(kwargs or {}))
    except (TypeError, ValueError) as exc:
        raise LNQError(f"model config has bad arguments for {name!r} ({exc}); re-export the model") from exc
