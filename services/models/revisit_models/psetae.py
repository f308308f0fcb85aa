"""PSE-TAE: crop type of a parcel from its series of pixel sets, and its S1+S2 fusion.

Reference: V. Sainte Fare Garnot, L. Landrieu, S. Giordano, N. Chehata, "Satellite Image
Time Series Classification with Pixel-Set Encoders and Temporal Self-Attention", CVPR
2020. The architecture is written here from the paper:

- the pixel-set encoder (PSE) embeds every pixel of a date with a shared MLP, pools the
  set by its (masked) mean and standard deviation, appends the parcel's geometric
  features and embeds the result: one vector per date, whatever the number of pixels;
- the temporal attention encoder (TAE, `temporal.py`) attends over the dates with
  sinusoidal encodings of their day in the season;
- a decoder MLP gives the class probabilities.

`PseTaeFusion` adds a Sentinel-1 branch: the per-parcel backscatter statistics of each
Sentinel-1 pass (what the preprocess service sends: mean and standard deviation in dB
of VV and VH and the VH−VV ratio) are embedded by an MLP and go through their own TAE,
on their own dates; the two season embeddings are concatenated before the decoder.
Where a parcel has no Sentinel-1 pass yet, the branch contributes zeros.

Inputs are physical values (surface reflectance 0..1, dB, days): the normalisation of
the training data is part of the model (buffers), so the TorchScript file is the whole
story. Dates and pixels are padded to the longest of a batch; the masks say which are
real, and padding does not change the output (tested).
"""

from __future__ import annotations

import torch
from torch import nn

from revisit_common.cards import CONSTANT_STD
from revisit_models.temporal import TemporalAttentionEncoder

#: Band order of the pixel sets that the preprocess service writes (and the models read).
S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
#: Per-pass Sentinel-1 statistics of a parcel, in the preprocess service's order.
S1_FEATURES: tuple[str, ...] = ("VV_db_mean", "VH_db_mean", "VV_db_std", "VH_db_std", "VH_VV_db")
#: Geometric features of a parcel, in the preprocess service's order.
GEOMFEAT: tuple[str, ...] = ("perimeter_m", "area_px", "cover_ratio", "perimeter_per_area")


def _mlp(sizes: list[int], final_relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_relu:
            layers += [nn.BatchNorm1d(sizes[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers)


class _Normaliser(nn.Module):
    """(x - mean) / std with the training data's statistics (frozen parameters). A
    feature that was constant in training (one-pixel samples have no spread, blocks of
    one size no varying geometry) is held at its training value, 0 once normalised: the
    model never learnt what other values mean, and dividing by a zero std would turn an
    ordinary value elsewhere (a parcel's 1.5 dB spread) into millions."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(size), requires_grad=False)
        self.std = nn.Parameter(torch.ones(size), requires_grad=False)
        self.varies = nn.Parameter(torch.ones(size), requires_grad=False)

    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        with torch.no_grad():
            self.mean.copy_(mean)
            self.std.copy_(std.clamp(min=CONSTANT_STD))
            self.varies.copy_((std > CONSTANT_STD).to(self.varies.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std * self.varies


#: Pixels (dates × set size × samples) that the encoder embeds at once at inference.
CHUNK_PIXELS = 8192


class PixelSetEncoder(nn.Module):
    """(B, T, C, S) pixels + (B, T, S) mask + (B, G) geometry -> (B, T, out_dim)."""

    def __init__(
        self,
        channels: int = len(S2_BANDS),
        mlp1: tuple[int, ...] = (32, 64),
        mlp2: tuple[int, ...] = (128,),
        geomfeat: int = len(GEOMFEAT),
        use_geomfeat: bool = True,
    ) -> None:
        super().__init__()
        self.normalise = _Normaliser(channels)
        self.geom_normalise = _Normaliser(geomfeat)
        self.use_geomfeat = use_geomfeat
        self.mlp1 = _ValidRows([channels, *mlp1])
        pooled = 2 * mlp1[-1] + (geomfeat if use_geomfeat else 0)
        self.mlp2 = _ValidRows([pooled, *mlp2])
        self.out_dim = mlp2[-1]
        self.chunk_pixels = CHUNK_PIXELS

    def forward(
        self, pixels: torch.Tensor, mask: torch.Tensor, geomfeat: torch.Tensor
    ) -> torch.Tensor:
        batch, length, _, size = pixels.shape
        # At inference, samples go through in chunks of about `chunk_pixels` pixels, so
        # that the cost per sample stays flat with the batch size: 256 full seasons at
        # once (12 dates x 64 pixels each, ~50 MB a layer) ran ~3x slower a sample than
        # in chunks of 8,192 pixels, and Triton's batcher merges requests up to 256.
        step = batch if self.training else max(1, self.chunk_pixels // max(1, length * size))
        if step >= batch:
            return self._encode(pixels, mask, geomfeat)
        parts: list[torch.Tensor] = []
        for start in range(0, batch, step):
            end = min(start + step, batch)
            parts.append(self._encode(pixels[start:end], mask[start:end], geomfeat[start:end]))
        return torch.cat(parts, dim=0)

    def _encode(
        self, pixels: torch.Tensor, mask: torch.Tensor, geomfeat: torch.Tensor
    ) -> torch.Tensor:
        batch, length, channels, size = pixels.shape
        valid = mask > 0
        # Only the observed pixels are embedded and pooled: a batch padded to its largest
        # set (64 pixels) is mostly padding for small parcels, and a padded (B·T·S, 64)
        # embedding made every elementwise pass memory-bound (throughput fell past 128).
        rows = valid.reshape(-1).nonzero().squeeze(1)
        date_of_row = torch.div(rows, size, rounding_mode="floor")  # index into B·T
        x = self.normalise(pixels.permute(0, 1, 3, 2).reshape(-1, channels)[rows])
        x = self.mlp1.mlp(x)  # (N valid, F)
        dates = batch * length
        count = torch.zeros(dates, 1, dtype=x.dtype, device=x.device)
        count.index_add_(0, date_of_row, torch.ones_like(x[:, :1]))
        total = torch.zeros(dates, x.shape[1], dtype=x.dtype, device=x.device)
        mean = total.index_add_(0, date_of_row, x) / count.clamp(min=1.0)
        departure = (x - mean[date_of_row]) ** 2
        spread = torch.zeros_like(total).index_add_(0, date_of_row, departure)
        spread = spread / count.clamp(min=1.0)
        std = torch.where(count > 1, torch.sqrt(spread + 1e-8), torch.zeros_like(spread))
        pooled = [mean, std]
        if self.use_geomfeat:
            geometry = self.geom_normalise(geomfeat).unsqueeze(1).expand(batch, length, -1)
            pooled.append(geometry.reshape(dates, -1))
        joined = torch.cat(pooled, dim=-1)
        embedded: torch.Tensor = self.mlp2(joined, (count > 0).reshape(-1))
        return embedded.view(batch, length, -1)


class _ValidRows(nn.Module):
    """An MLP over the rows of x (N, F) where valid (N,) is set; zeros elsewhere.

    Padded pixels and dates never enter the MLPs, so they weigh nothing in the batch
    statistics either, and a set of 1 pixel among 63 pads trains like a set of one.
    """

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.mlp = _mlp(sizes)
        self.width = sizes[-1]

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.width, dtype=x.dtype, device=x.device)
        out[valid] = self.mlp(x[valid])
        return out


def _softmax_head(sizes: list[int]) -> nn.Sequential:
    return _mlp(sizes, final_relu=False)


class SeasonEncoder(nn.Module):
    """PSE + TAE: a parcel's Sentinel-2 season so far -> (B, out_dim)."""

    def __init__(self, use_geomfeat: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        self.pse = PixelSetEncoder(use_geomfeat=use_geomfeat)
        self.tae = TemporalAttentionEncoder(in_dim=self.pse.out_dim, dropout=dropout)
        self.out_dim = self.tae.out_dim

    def forward(
        self,
        pixels: torch.Tensor,
        pixel_mask: torch.Tensor,
        positions: torch.Tensor,
        geomfeat: torch.Tensor,
    ) -> torch.Tensor:
        dates = (pixel_mask > 0).any(dim=2).to(pixels.dtype)
        embedded: torch.Tensor = self.tae(self.pse(pixels, pixel_mask, geomfeat), positions, dates)
        return embedded


class PseTae(nn.Module):
    """Sentinel-2 PSE-TAE: pixel sets of a season -> class probabilities (B, K)."""

    def __init__(self, num_classes: int, use_geomfeat: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        self.s2 = SeasonEncoder(use_geomfeat, dropout)
        self.decoder = _softmax_head([self.s2.out_dim, 64, 32, num_classes])

    def forward(
        self,
        pixels: torch.Tensor,
        pixel_mask: torch.Tensor,
        positions: torch.Tensor,
        geomfeat: torch.Tensor,
    ) -> torch.Tensor:
        logits = self.decoder(self.s2(pixels, pixel_mask, positions, geomfeat))
        return torch.softmax(logits, dim=-1)


class S1Encoder(nn.Module):
    """(B, T1, F) per-pass backscatter statistics + validity -> (B, T1, out_dim)."""

    def __init__(self, features: int = len(S1_FEATURES), sizes: tuple[int, ...] = (64, 128)):
        super().__init__()
        self.normalise = _Normaliser(features)
        self.mlp = _ValidRows([features, *sizes])
        self.out_dim = sizes[-1]

    def forward(self, s1: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        batch, length, features = s1.shape
        x = self.normalise(s1).reshape(-1, features)
        rows = (valid > 0).reshape(-1)
        embedded: torch.Tensor = self.mlp(x, rows).view(batch, length, -1)
        return embedded


class PseTaeFusion(nn.Module):
    """Sentinel-1 + Sentinel-2: two temporal encoders, one decoder on their concatenation."""

    def __init__(self, num_classes: int, use_geomfeat: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        self.s2 = SeasonEncoder(use_geomfeat, dropout)
        self.s1 = S1Encoder()
        self.s1_tae = TemporalAttentionEncoder(in_dim=self.s1.out_dim, dropout=dropout)
        self.decoder = _softmax_head([self.s2.out_dim + self.s1_tae.out_dim, 64, 32, num_classes])

    def forward(
        self,
        pixels: torch.Tensor,
        pixel_mask: torch.Tensor,
        positions: torch.Tensor,
        geomfeat: torch.Tensor,
        s1: torch.Tensor,
        s1_valid: torch.Tensor,
        s1_positions: torch.Tensor,
    ) -> torch.Tensor:
        optical = self.s2(pixels, pixel_mask, positions, geomfeat)
        radar = self.s1_tae(self.s1(s1, s1_valid), s1_positions, s1_valid)
        return torch.softmax(self.decoder(torch.cat([optical, radar], dim=-1)), dim=-1)
