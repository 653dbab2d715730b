"""`fillm.LLMEncoder.v1`: the thinc model that turns docs into one vector per spaCy token with a
LoRA-tuned decoder LLM, and its registered function.

docs ─► encoder_batch.docs_to_batch ─► LLMShim(LLMEncoderModule) ─► one array per doc.

Only the adapter and the encoder's own small modules train; base weights stay frozen and are
never serialized: a saved pipeline refers to its base model by name (and fingerprint).
"""

from pathlib import Path
from typing import List, Optional, Sequence

import torch
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.layers.pytorchwrapper import forward as pytorch_forward
from thinc.types import Floats2d

from ..models.adapters import LanguageAdapter, LoraSettings, add_lora_adapter, load_language_adapter, new_adapter_name
from ..models.loading import BaseLLM
from .encoder_batch import POOLING, docs_to_batch
from .encoder_settings import BatchSettings, ComputeSettings, ContextualizerSettings, LayerSettings
from .llm_encoder_module import BIDIRECTIONAL_MODEL_TYPES, LLMEncoderModule
from .llm_shim import LLMShim


def mixed_layer_indices(first_layer: int, last_layer: int, layer_stride: int) -> List[int]:
    """first_layer, first_layer + layer_stride, ..., last_layer."""
    return list(range(first_layer, last_layer + 1, layer_stride))


def build_llm_encoder(
    llm: BaseLLM,
    *,
    width: int,
    lora_r: int,
    lora_alpha: float,
    lora_dropout: float,
    target_modules: Sequence[str],
    lora_top_layers: int,
    first_layer: int,
    last_layer: int,
    layer_stride: int,
    attention: str,
    pooling: str,
    contextualizer_width: int,
    window: int,
    stride: int,
    max_batch_pieces: int,
    contextualizer_depth: int,
    contextualizer_dropout: float,
    prefix_cache_mb: int,
    final_norm: bool,
    precision: str = "float32",
    compiled: bool = False,
    language_adapter: str = "",
) -> Model[List[Doc], List[Floats2d]]:
    """The thinc model wrapping `LLMEncoderModule` (validated arguments, see the registry)."""
    n_layers = llm.config.num_hidden_layers
    if not 0 <= first_layer <= last_layer <= n_layers:
        raise ValueError(
            f"Need 0 <= first_layer <= last_layer <= {n_layers} (the base model's layers), "
            f"got first_layer={first_layer}, last_layer={last_layer}"
        )
    if layer_stride < 1 or (last_layer - first_layer) % layer_stride:
        raise ValueError(
            f"Need layer_stride >= 1 dividing last_layer - first_layer, got layer_stride={layer_stride} "
            f"for layers {first_layer}..{last_layer}"
        )
    if not 0 <= lora_top_layers <= last_layer:
        raise ValueError(f"Need 0 <= lora_top_layers <= last_layer ({last_layer}), got {lora_top_layers}")
    if pooling not in POOLING:
        raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
    if attention == "bidirectional" and llm.config.model_type not in BIDIRECTIONAL_MODEL_TYPES:
        raise ValueError(
            f"attention='bidirectional' is built for {BIDIRECTIONAL_MODEL_TYPES} (their attention-mask "
            f"inputs), not for model_type {llm.config.model_type!r}: use attention='causal'"
        )
    max_window = getattr(llm.config, "max_position_embeddings", window + 1) - 1
    if window > max_window:
        raise ValueError(f"window={window} is longer than the base model's context ({max_window} pieces)")
    language = None
    if language_adapter:
        if lora_r > 0:
            raise ValueError(
                "An encoder with a language adapter keeps the LLM frozen: set lora_r = 0 (a task LoRA "
                "on top of a language adapter is not supported)."
            )
        language = LanguageAdapter(str(language_adapter))
        # Where the directory is absent (a trained pipeline loaded elsewhere), the pipeline's own
        # saved weights supply the adapter (LLMShim.from_bytes).
        if Path(language_adapter).exists():
            language.name, language.meta = load_language_adapter(llm, Path(language_adapter))
            language.check_attention(attention)
    layers = LayerSettings(mixed_layer_indices(first_layer, last_layer, layer_stride), attention, final_norm)
    adapter_name = lora = None
    frozen_prefix = last_layer
    if lora_r > 0 and last_layer > 0:
        # LoRA only on layers that run: the top `lora_top_layers` of them (0: all of them).
        frozen_prefix = last_layer - lora_top_layers if lora_top_layers else 0
        # 0-based layers: layer k's output is h_(k+1)
        lora = LoraSettings(
            lora_r, lora_alpha, lora_dropout, tuple(target_modules), tuple(range(frozen_prefix, last_layer))
        )
        adapter_name = new_adapter_name("encoder")
        add_lora_adapter(llm, adapter_name, lora)
    module = LLMEncoderModule(
        llm,
        width,
        layers,
        contextualizer=ContextualizerSettings(contextualizer_width, contextualizer_depth, contextualizer_dropout),
        batching=BatchSettings(max_batch_pieces, frozen_prefix, prefix_cache_mb),
        compute=ComputeSettings(precision, compiled),
        lora=lora,
        adapter_name=adapter_name,
        language_adapter=language,
    )
    return Model(
        "llm_encoder",
        pytorch_forward,
        attrs={
            "convert_inputs": docs_to_batch(llm, window, stride, attention == "causal", pooling),
            "convert_outputs": tokens_to_arrays,
        },
        shims=[LLMShim(module)],
        dims={"nO": width},
    )


def tokens_to_arrays(model: Model, inputs_outputs, is_train: bool):
    """The thinc `convert_outputs` function: one (tokens, width) array per doc."""
    docs, tokens = inputs_outputs
    lengths = [len(doc) for doc in docs]
    arrays = [model.ops.asarray2f(torch2xp(t)) for t in torch.split(tokens.detach(), lengths)]

    def backprop(d_arrays: List[Floats2d]) -> ArgsKwargs:
        d_tokens = xp2torch(model.ops.xp.concatenate(d_arrays) if d_arrays else model.ops.alloc2f(0, tokens.shape[1]))
        return ArgsKwargs(args=(tokens,), kwargs={"grad_tensors": (d_tokens.to(tokens.device),)})

    return arrays, backprop


def llm_encoder_v1(
    model_name: str = "gemma3-270m",
    width: int = 256,
    lora_r: int = 16,
    lora_alpha: float = 32.0,
    lora_dropout: float = 0.05,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
    lora_top_layers: int = 0,
    first_layer: int = 1,
    last_layer: int = 4,
    layer_stride: int = 1,
    attention: str = "causal",
    pooling: str = "last",
    contextualizer_width: int = 0,
    contextualizer_depth: int = 1,
    contextualizer_dropout: float = 0.0,
    window: int = 256,
    stride: int = 192,
    max_batch_pieces: int = 4096,
    prefix_cache_mb: int = 0,
    final_norm: bool = False,
    dtype: str = "float32",
    precision: str = "float32",
    compiled: bool = False,
    language_adapter: str = "",
    features: Optional[Model[List[Doc], List[Floats2d]]] = None,
    features_into_contextualizer: bool = False,
    contextualizer_skip: bool = False,
) -> Model[List[Doc], List[Floats2d]]:
    """`fillm.LLMEncoder.v1`: token vectors from a LoRA-tuned causal LM, for spaCy's tok2vec.

    model_name: an alias (`gemma3-270m`), a local Hugging Face directory, or a hub name
        already in the local Hugging Face cache (e.g. `SeaLLMs/SeaLLM-7B-v2.5`).
    width: output width per token (what listeners read).
    lora_r, lora_alpha, lora_dropout, target_modules: the LoRA adapter; lora_r = 0 keeps the LLM frozen.
    lora_top_layers: LoRA on the top N of the layers that run (0: on all of them). The layers
        below carry no LoRA, so their outputs can be cached in training (prefix_cache_mb).
    first_layer, last_layer, layer_stride: the hidden states mixed are first_layer,
        first_layer + layer_stride, ..., last_layer (0 = embeddings, k = decoder layer k's own
        output, without the model's final norm); layers after last_layer never run.
    attention: "causal" (as pre-trained) or "bidirectional" (every piece sees the whole window;
        needs LoRA to adapt).
    pooling: how a token's pieces become one vector: "first", "mean" or "last" (for a causal
        model the last piece has seen the whole word).
    contextualizer_width: width of a BiLSTM over token vectors (0 = none): right context for a causal LLM.
    contextualizer_depth, contextualizer_dropout: BiLSTM layers, and dropout between them
        (Dozat & Manning 2017 use 3 layers and 0.33).
    window, stride: documents longer than `window` pieces run in overlapping windows `stride` apart.
    max_batch_pieces: padded pieces per forward pass (memory bound).
    prefix_cache_mb: in training, keep the outputs of the layers without LoRA for each training
        window, up to this many MB (0 = off): later epochs run only the layers above them.
        Inference never caches.
    final_norm: pass the last mixed layer through the model's final norm (Hugging Face's last
        hidden state; a norm trained for the top layer's output). Off: every mixed state is its
        layer's own output (docs/experiments.md, 'The final norm on the last layer').
    dtype: torch dtype of the base weights ("float32" on CPU; "bfloat16" for 7B models on GPU).
    precision: what the LLM layers compute in at inference (training always uses `dtype`):
        "float32", "bfloat16" (autocast; falls back to float32 with one log line where the
        device has no fast bfloat16), or "auto" (bfloat16 exactly where it is fast: CPUs with
        AVX512-BF16 or AMX, GPUs that support it). See layers/precision.py.
    compiled: at inference, run the LLM layers torch.compile'd (the first documents pay the
        compilation; frozen encoders only; falls back with one log line). See layers/compiled.py.
    language_adapter: "" or a directory written by `python -m fillm_spacy.adapt train`: the LLM
        runs with that Tagalog adapter, frozen (lora_r must be 0; attention as the adapter was
        trained). The adapter's weights are saved inside the pipeline, so a trained pipeline
        loads where the directory does not exist.
    features: optional extra token features (e.g. spaCy's MultiHashEmbed + MaxoutWindowEncoder)
        concatenated with the LLM features: Tagalog affixes and reduplication live in characters.
    features_into_contextualizer: False: the BiLSTM reads the LLM states and `features` join its
        output; True: the BiLSTM reads both, LLM states (projected to `width`) and `features`
        (Dozat & Manning 2017 feed word and character features into their BiLSTM).
    contextualizer_skip: with features_into_contextualizer, the BiLSTM's input also goes around
        it, concatenated with its output: every head then reads the character features directly,
        as without features_into_contextualizer (a remedy tried for lemmas; the lemmatizer's own
        features serve them better: docs/experiments.md, 'What the lemmatizer needs').
    """
    from thinc.api import Maxout, chain, concatenate, noop, with_array

    from ..models.loading import load_base_llm
    from .bilstm import packed_bilstm

    if features_into_contextualizer and (features is None or contextualizer_width <= 0):
        raise ValueError("features_into_contextualizer needs `features` and contextualizer_width > 0")
    if contextualizer_skip and not features_into_contextualizer:
        raise ValueError(
            "contextualizer_skip is for features_into_contextualizer = true (without it the features already skip the BiLSTM)"
        )
    llm = load_base_llm(model_name, dtype=dtype)
    bilstm = None
    if features_into_contextualizer:  # the BiLSTM moves out of the torch module, after the concatenation
        n_features = features.get_dim("nO")
        bilstm = packed_bilstm(contextualizer_width, width + n_features, contextualizer_depth, contextualizer_dropout)
        contextualizer_width = 0
    encoder = build_llm_encoder(
        llm,
        width=width,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        lora_top_layers=lora_top_layers,
        first_layer=first_layer,
        last_layer=last_layer,
        layer_stride=layer_stride,
        attention=attention,
        pooling=pooling,
        contextualizer_width=contextualizer_width,
        contextualizer_depth=contextualizer_depth,
        contextualizer_dropout=contextualizer_dropout,
        window=window,
        stride=stride,
        max_batch_pieces=max_batch_pieces,
        prefix_cache_mb=prefix_cache_mb,
        final_norm=final_norm,
        precision=precision,
        compiled=compiled,
        language_adapter=language_adapter,
    )
    if features is None:
        return encoder
    mixer = with_array(Maxout(nO=width, nP=3, normalize=True, dropout=0.0))
    if bilstm is not None:
        contextual = concatenate(bilstm, noop()) if contextualizer_skip else bilstm
        combined = chain(concatenate(encoder, features), contextual, mixer)
    else:
        combined = chain(concatenate(encoder, features), mixer)
    combined.set_dim("nO", width)
    return combined
