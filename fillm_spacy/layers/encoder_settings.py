"""The LLM encoder's settings, grouped by concern: one small typed dataclass each, read by every
module that needs it (the builder, the torch module, the shim's copies, token_states). The LoRA
adapter's shape is `models.adapters.LoraSettings`, since `models/` adds the adapter.

Each group is also a config block of `fillm.LLMEncoder.v2` (the registered functions at the end):

    [components.tok2vec.model.layers]
    @misc = "fillm.EncoderLayers.v1"
    first = 4
    last = 12
"""

from dataclasses import dataclass
from typing import List, Tuple

from ..models.adapters import LoraSettings
from .encoder_batch import POOLING
from .precision import check_precision

ATTENTION = ("causal", "bidirectional")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class LayerSettings:
    """Which hidden states the encoder reads, and how the LLM runs to produce them.

    mixed: the states mixed (0 = embeddings, k = decoder layer k's own output); the decoder runs
        up to max(mixed) and no further.
    attention: "causal" (as pre-trained) or "bidirectional" (every piece sees its whole window).
    final_norm: the last mixed state goes through the model's final norm (Hugging Face's last
        hidden state); the others are always their layers' own outputs.
    pooling: how a token's pieces become one vector: "first", "mean" or "last".
    """

    mixed: Tuple[int, ...]
    attention: str = "causal"
    final_norm: bool = False
    pooling: str = "last"

    def __post_init__(self):
        if not self.mixed or min(self.mixed) < 0:
            raise ValueError(f"mixed layers must be >= 0 and at least one, got {list(self.mixed)}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {self.attention!r}")
        if self.pooling not in POOLING:
            raise ValueError(f"pooling must be one of {POOLING}, got {self.pooling!r}")
        object.__setattr__(self, "mixed", tuple(sorted(self.mixed)))

    @property
    def last(self) -> int:
        return self.mixed[-1]


@dataclass(frozen=True)
class ContextualizerSettings:
    """The stacked BiLSTM over token states (width 0: none).

    reads_features: False: the BiLSTM runs inside the torch module on the LLM states and the
        encoder's `features` join its output; True: it runs after them, on the LLM states and
        the features together (Dozat & Manning 2017 feed word and character features into it).
    skip: with reads_features, the BiLSTM's input also goes around it, concatenated with its
        output.
    """

    width: int = 0
    depth: int = 1
    dropout: float = 0.0
    reads_features: bool = False
    skip: bool = False

    def __post_init__(self):
        if self.width < 0 or self.depth < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"Need contextualizer width >= 0, depth >= 1 and 0 <= dropout < 1, "
                f"got {self.width}, {self.depth} and {self.dropout}"
            )
        if self.skip and not self.reads_features:
            raise ValueError(
                "The contextualizer's skip is for reads_features = true (without it the features already skip the BiLSTM)"
            )


@dataclass(frozen=True)
class BatchSettings:
    """How the LLM's work is cut and kept.

    max_batch_pieces: padded pieces per forward pass (memory bound).
    frozen_prefix: decoder layers 1..frozen_prefix carry no LoRA (their outputs never change);
        the builder sets it from the LoRA settings.
    prefix_cache_mb: in training, keep those layers' outputs per training window, up to this many
        MB (0 = off). Inference never caches.
    window, stride: documents longer than `window` pieces run in overlapping windows `stride` apart.
    """

    max_batch_pieces: int = 4096
    frozen_prefix: int = 0
    prefix_cache_mb: int = 0
    window: int = 256
    stride: int = 192

    def __post_init__(self):
        if self.max_batch_pieces < 1 or self.frozen_prefix < 0 or self.prefix_cache_mb < 0:
            raise ValueError(
                f"Need max_batch_pieces >= 1, frozen_prefix >= 0 and prefix_cache_mb >= 0, got "
                f"{self.max_batch_pieces}, {self.frozen_prefix} and {self.prefix_cache_mb}"
            )
        if not 0 < self.stride <= self.window:
            raise ValueError(f"Need 0 < stride <= window, got stride={self.stride}, window={self.window}")


@dataclass(frozen=True)
class ComputeSettings:
    """What the LLM computes in.

    precision: at inference, "float32", "bfloat16" or "auto" (layers/precision.py); training
        always reads `dtype`.
    compiled: at inference, the LLM layers run torch.compile'd (layers/compiled.py; frozen
        encoders only).
    dtype: torch dtype of the base weights ("float32" on CPU; "bfloat16" for 7B models on GPU).
    """

    precision: str = "float32"
    compiled: bool = False
    dtype: str = "float32"

    def __post_init__(self):
        check_precision(self.precision)  # an unknown name fails here, not at the first doc
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")


def mixed_layer_indices(first_layer: int, last_layer: int, layer_stride: int) -> List[int]:
    """first_layer, first_layer + layer_stride, ..., last_layer."""
    if not 0 <= first_layer <= last_layer:
        raise ValueError(f"Need 0 <= first <= last, got first={first_layer}, last={last_layer}")
    if layer_stride < 1 or (last_layer - first_layer) % layer_stride:
        raise ValueError(
            f"Need a layer stride >= 1 dividing last - first, got stride={layer_stride} "
            f"for layers {first_layer}..{last_layer}"
        )
    return list(range(first_layer, last_layer + 1, layer_stride))


# The config blocks of fillm.LLMEncoder.v2, registered in spaCy's `misc` registry (pyproject.toml's
# entry points), as spacy-transformers registers its span getters.


def encoder_layers_v1(
    first: int = 1,
    last: int = 4,
    stride: int = 1,
    attention: str = "causal",
    pooling: str = "last",
    final_norm: bool = False,
) -> LayerSettings:
    """Which hidden states the encoder mixes: first, first + stride, ..., last (0 = embeddings,
    k = decoder layer k's own output); layers after `last` never run.

    attention: "causal" (as pre-trained) or "bidirectional" (every piece sees its whole window;
        needs LoRA or an adapter trained for it).
    pooling: how a token's pieces become one vector: "first", "mean" or "last" (for a causal
        model the last piece has seen the whole word).
    final_norm: pass the last mixed state through the model's final norm (Hugging Face's last
        hidden state); off, every mixed state is its layer's own output.
    """
    return LayerSettings(tuple(mixed_layer_indices(first, last, stride)), attention, final_norm, pooling)


def encoder_lora_v1(
    r: int = 16,
    alpha: float = 32.0,
    dropout: float = 0.05,
    target_modules: List[str] = ["q_proj", "v_proj"],  # noqa: B006 (confection reads the default)
    top_layers: int = 0,
) -> LoraSettings:
    """The encoder's own LoRA adapter; r = 0 keeps the LLM frozen.

    alpha, dropout, target_modules: LoRA's scaling, dropout and the projections it adapts.
    top_layers: LoRA on the top N of the layers that run (0: on all of them); the layers below
        carry none, so their outputs can be cached in training (batching.prefix_cache_mb).
    """
    if r < 0 or top_layers < 0:
        raise ValueError(f"Need LoRA r >= 0 and top_layers >= 0, got r={r}, top_layers={top_layers}")
    return LoraSettings(r, alpha, dropout, tuple(target_modules), top_layers=top_layers)


def encoder_contextualizer_v1(
    width: int = 0,
    depth: int = 1,
    dropout: float = 0.0,
    reads_features: bool = False,
    skip: bool = False,
) -> ContextualizerSettings:
    """A BiLSTM over the token vectors (width 0: none): right context for a causal LLM.

    depth, dropout: BiLSTM layers and dropout between them (Dozat & Manning 2017: 3 and 0.33).
    reads_features: the BiLSTM reads the LLM states and the encoder's `features` together
        (True), or only the LLM states with the features joining its output (False).
    skip: with reads_features, the BiLSTM's input also goes around it, concatenated with its output.
    """
    return ContextualizerSettings(width, depth, dropout, reads_features, skip)


def encoder_batching_v1(
    window: int = 256,
    stride: int = 192,
    max_batch_pieces: int = 4096,
    prefix_cache_mb: int = 0,
) -> BatchSettings:
    """How the LLM's work is cut and kept.

    window, stride: documents longer than `window` pieces run in overlapping windows `stride` apart.
    max_batch_pieces: padded pieces per forward pass (memory bound).
    prefix_cache_mb: in training, keep the outputs of the layers without LoRA for each training
        window, up to this many MB (0 = off): later epochs run only the layers above them.
        Inference never caches.
    """
    return BatchSettings(max_batch_pieces, 0, prefix_cache_mb, window, stride)


def encoder_compute_v1(precision: str = "float32", compiled: bool = False, dtype: str = "float32") -> ComputeSettings:
    """What the LLM computes in.

    precision: at inference, "float32", "bfloat16" (autocast; float32 with one log line where
        the device has no fast bfloat16) or "auto" (bfloat16 exactly where it is fast: CPUs
        with AVX512-BF16 or AMX, GPUs that support it); training always reads `dtype`.
    compiled: at inference, run the LLM layers torch.compile'd (the first documents pay the
        compilation; frozen encoders only; falls back with one log line).
    dtype: torch dtype of the base weights ("float32" on CPU; "bfloat16" for 7B models on GPU).
    """
    return ComputeSettings(precision, compiled, dtype)
