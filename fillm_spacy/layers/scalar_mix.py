"""A learned scalar mix of hidden layers (Peters et al. 2018, ELMo)."""

from typing import Sequence

import torch


class ScalarMix(torch.nn.Module):
    """gamma * sum_k softmax(w)_k * layer_norm(h_k), then a LayerNorm.

    Each layer is normalized before mixing because Gemma's hidden states have outlier
    dimensions whose scale grows with depth: unnormalized, a few dimensions dominate
    and heads on top train badly.
    """

    def __init__(self, n_layers: int, hidden: int):
        super().__init__()
        self.weights = torch.nn.Parameter(torch.zeros(n_layers))
        self.gamma = torch.nn.Parameter(torch.ones(1))
        self.norm = torch.nn.LayerNorm(hidden)

    def forward(self, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(layers) != len(self.weights):
            raise ValueError(f"ScalarMix expects {len(self.weights)} layers, got {len(layers)}")
        shares = torch.softmax(self.weights, dim=0)
        mixed = sum(
            share * torch.nn.functional.layer_norm(layer, layer.shape[-1:]) for share, layer in zip(shares, layers)
        )
        return self.norm(self.gamma * mixed)
