"""The LLM encoder's settings, grouped by concern: one small typed dataclass each, read by every
module that needs it (the builder, the torch module, the shim's copies, token_states). The LoRA
adapter's shape is `models.adapters.LoraSettings`, since `models/` adds the adapter."""

from dataclasses import dataclass
from typing import Tuple

from .precision import check_precision

ATTENTION = ("causal", "bidirectional")


@dataclass(frozen=True)
class LayerSettings:
    """Which hidden states the encoder reads, and how the LLM runs to produce them.

    mixed: the states mixed (0 = embeddings, k = decoder layer k's own output); the decoder runs
        up to max(mixed) and no further.
    attention: "causal" (as pre-trained) or "bidirectional" (every piece sees its whole window).
    final_norm: the last mixed state goes through the model's final norm (Hugging Face's last
        hidden state); the others are always their layers' own outputs.
    """

    mixed: Tuple[int, ...]
    attention: str = "causal"
    final_norm: bool = False

    def __post_init__(self):
        if not self.mixed or min(self.mixed) < 0:
            raise ValueError(f"mixed layers must be >= 0 and at least one, got {list(self.mixed)}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {self.attention!r}")
        object.__setattr__(self, "mixed", tuple(sorted(self.mixed)))

    @property
    def last(self) -> int:
        return self.mixed[-1]


@dataclass(frozen=True)
class ContextualizerSettings:
    """The stacked BiLSTM over token states inside the torch module (width 0: none)."""

    width: int = 0
    depth: int = 1
    dropout: float = 0.0

    def __post_init__(self):
        if self.width < 0 or self.depth < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"Need contextualizer_width >= 0, contextualizer_depth >= 1 and 0 <= contextualizer_dropout < 1, "
                f"got {self.width}, {self.depth} and {self.dropout}"
            )


@dataclass(frozen=True)
class BatchSettings:
    """How the LLM's work is cut and kept.

    max_batch_pieces: padded pieces per forward pass (memory bound).
    frozen_prefix: decoder layers 1..frozen_prefix carry no LoRA (their outputs never change).
    prefix_cache_mb: in training, keep those layers' outputs per training window, up to this many
        MB (0 = off). Inference never caches.
    """

    max_batch_pieces: int = 4096
    frozen_prefix: int = 0
    prefix_cache_mb: int = 0

    def __post_init__(self):
        if self.max_batch_pieces < 1 or self.frozen_prefix < 0 or self.prefix_cache_mb < 0:
            raise ValueError(
                f"Need max_batch_pieces >= 1, frozen_prefix >= 0 and prefix_cache_mb >= 0, got "
                f"{self.max_batch_pieces}, {self.frozen_prefix} and {self.prefix_cache_mb}"
            )


@dataclass(frozen=True)
class ComputeSettings:
    """What the LLM layers compute in at inference (training always reads float32):
    precision "float32", "bfloat16" or "auto" (layers/precision.py), and whether they run
    torch.compile'd (layers/compiled.py; frozen encoders only)."""

    precision: str = "float32"
    compiled: bool = False

    def __post_init__(self):
        check_precision(self.precision)  # an unknown name fails here, not at the first doc
