"""Temporal attention over a masked, variable-length series of dates.

The temporal attention encoder (TAE) of Sainte Fare Garnot et al., "Satellite Image Time
Series Classification with Pixel-Set Encoders and Temporal Self-Attention" (CVPR 2020):
each date's embedding gets a sinusoidal encoding of its position (days), a "master
query" per head is computed from the mean of the series, keys come from the dates, and
each head returns the attention-weighted mean of its slice of the embeddings.

A season grows pass by pass, so every series here is padded to the longest of its batch
and carries a date mask: padded dates take no part in the mean, the keys or the softmax,
so a series gives the same output whatever padding it is given. A series without any
valid date yields zeros (and the model that uses it says so in its output).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def positional_encoding(positions: torch.Tensor, dim: int, period: float = 1000.0) -> torch.Tensor:
    """Sinusoidal encoding (B, T, dim) of positions (B, T) given in days."""
    half = torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device)
    frequencies = torch.exp(-math.log(period) * half / dim)
    angles = positions.unsqueeze(-1).float() * frequencies
    encoding = torch.zeros(
        positions.shape[0], positions.shape[1], dim, dtype=torch.float32, device=positions.device
    )
    encoding[:, :, 0::2] = torch.sin(angles)
    encoding[:, :, 1::2] = torch.cos(angles[:, :, : dim // 2])
    return encoding


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of x over `dim` where mask (same shape as x without its last axis) is set."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    total = (x * weights).sum(dim=dim)
    count = weights.sum(dim=dim).clamp(min=1.0)
    return total / count


class TemporalAttentionEncoder(nn.Module):
    """(B, T, E) embeddings + positions (B, T) + date mask (B, T) -> (B, out_dim)."""

    def __init__(
        self,
        in_dim: int = 128,
        n_head: int = 4,
        d_k: int = 32,
        hidden: tuple[int, ...] = (512, 128, 128),
        dropout: float = 0.2,
        period: float = 1000.0,
    ) -> None:
        super().__init__()
        if in_dim % n_head:
            raise ValueError(f"in_dim {in_dim} must be a multiple of n_head {n_head}")
        self.in_dim, self.n_head, self.d_k, self.period = in_dim, n_head, d_k, period
        self.in_norm = nn.LayerNorm(in_dim)
        self.query = nn.Linear(in_dim, n_head * d_k)
        self.key = nn.Linear(in_dim, n_head * d_k)
        layers: list[nn.Module] = []
        width = in_dim  # the heads' outputs, concatenated
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU()]
            width = size
        self.mlp = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.out_norm = nn.LayerNorm(width)
        self.out_dim = width

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, date_mask: torch.Tensor
    ) -> torch.Tensor:
        batch, length, _ = x.shape
        x = self.in_norm(x) + positional_encoding(positions, self.in_dim, self.period)
        valid = date_mask > 0
        master = masked_mean(x, valid, dim=1)  # (B, E)
        q = self.query(master).view(batch, self.n_head, 1, self.d_k)
        k = self.key(x).view(batch, length, self.n_head, self.d_k).permute(0, 2, 3, 1)
        scores = torch.matmul(q, k).squeeze(2) / math.sqrt(self.d_k)  # (B, H, T)
        scores = scores.masked_fill(~valid.unsqueeze(1), -1e9)
        attention = torch.softmax(scores, dim=-1) * valid.unsqueeze(1).to(x.dtype)
        values = x.view(batch, length, self.n_head, self.in_dim // self.n_head)
        heads = torch.einsum("bht,bthd->bhd", attention, values).reshape(batch, self.in_dim)
        out = self.out_norm(self.dropout(self.mlp(heads)))
        any_valid = valid.any(dim=1, keepdim=True).to(out.dtype)
        result: torch.Tensor = out * any_valid
        return result
