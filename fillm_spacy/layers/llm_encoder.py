"""`fillm.LLMEncoder.v2`: the thinc model that turns docs into one vector per spaCy token with a
decoder LLM, and its registered functions (v1: the same encoder with flat settings).

docs ─► encoder_batch.docs_to_batch ─► LLMShim(LLMEncoderModule) ─► one array per doc.

Only the adapter and the encoder's own small modules train; base weights stay frozen and are
never serialized: a saved pipeline refers to its base model by name (and fingerprint).
"""

from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import torch
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.layers.pytorchwrapper import forward as pytorch_forward
from thinc.types import Floats2d

from ..models.adapters import LanguageAdapter, LoraSettings, add_lora_adapter, load_language_adapter, new_adapter_name
from ..models.loading import BaseLLM
from .encoder_batch import docs_to_batch
from .encoder_settings import (
    BatchSettings,
    ComputeSettings,
    ContextualizerSettings,
    LayerSettings,
    encoder_batching_v1,
    encoder_compute_v1,
    encoder_contextualizer_v1,
    encoder_layers_v1,
    encoder_lora_v1,
)
from .llm_encoder_module import BIDIRECTIONAL_MODEL_TYPES, LLMEncoderModule
from .llm_shim import LLMShim


def build_llm_encoder(
    llm: BaseLLM,
    *,
    width: int,
    layers: LayerSettings,
    lora: Optional[LoraSettings] = None,
    contextualizer: ContextualizerSettings = ContextualizerSettings(),
    batching: BatchSettings = BatchSettings(),
    compute: ComputeSettings = ComputeSettings(),
    language_adapter: str = "",
) -> Model[List[Doc], List[Floats2d]]:
    """The thinc model wrapping `LLMEncoderModule`, its settings checked against the base model
    (what each setting means: `llm_encoder_v2` and layers/encoder_settings.py). A contextualizer
    that reads features is not built here (it runs after them: `llm_encoder_v2`)."""
    n_layers = llm.config.num_hidden_layers
    last_layer = layers.last
    if last_layer > n_layers:
        raise ValueError(
            f"The encoder reads layers up to {last_layer} but the base model has {n_layers}: "
            f"set the layers' `last` to at most {n_layers}"
        )
    if lora is not None and lora.r == 0:
        lora = None
    if lora is not None and not 0 <= lora.top_layers <= last_layer:
        raise ValueError(f"Need 0 <= LoRA top_layers <= the last layer ({last_layer}), got {lora.top_layers}")
    if layers.attention == "bidirectional" and llm.config.model_type not in BIDIRECTIONAL_MODEL_TYPES:
        raise ValueError(
            f"attention='bidirectional' is built for {BIDIRECTIONAL_MODEL_TYPES} (their attention-mask "
            f"inputs), not for model_type {llm.config.model_type!r}: use attention='causal'"
        )
    max_window = getattr(llm.config, "max_position_embeddings", batching.window + 1) - 1
    if batching.window > max_window:
        raise ValueError(f"window={batching.window} is longer than the base model's context ({max_window} pieces)")
    language = None
    if language_adapter:
        if lora is not None:
            raise ValueError(
                "An encoder with a language adapter keeps the LLM frozen: set the LoRA r = 0 (a task LoRA "
                "on top of a language adapter is not supported)."
            )
        language = LanguageAdapter(str(language_adapter))
        # Where the directory is absent (a trained pipeline loaded elsewhere), the pipeline's own
        # saved weights supply the adapter (LLMShim.from_bytes).
        if Path(language_adapter).exists():
            language.name, language.meta = load_language_adapter(llm, Path(language_adapter))
            language.check_attention(layers.attention)
    adapter_name = None
    frozen_prefix = last_layer
    if lora is not None and last_layer > 0:
        # LoRA only on layers that run: the top `top_layers` of them (0: all of them).
        frozen_prefix = last_layer - lora.top_layers if lora.top_layers else 0
        # 0-based layers: layer k's output is h_(k+1)
        lora = replace(lora, layers=tuple(range(frozen_prefix, last_layer)))
        adapter_name = new_adapter_name("encoder")
        add_lora_adapter(llm, adapter_name, lora)
    else:
        lora = None
    module = LLMEncoderModule(
        llm,
        width,
        layers,
        contextualizer=contextualizer,
        batching=replace(batching, frozen_prefix=frozen_prefix),
        compute=compute,
        lora=lora,
        adapter_name=adapter_name,
        language_adapter=language,
    )
    return Model(
        "llm_encoder",
        pytorch_forward,
        attrs={
            "convert_inputs": docs_to_batch(
                llm, batching.window, batching.stride, layers.attention == "causal", layers.pooling
            ),
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


def llm_encoder_v2(
    model_name: str = "gemma3-270m",
    width: int = 256,
    layers: Optional[LayerSettings] = None,
    lora: Optional[LoraSettings] = None,
    contextualizer: Optional[ContextualizerSettings] = None,
    batching: Optional[BatchSettings] = None,
    compute: Optional[ComputeSettings] = None,
    language_adapter: str = "",
    features: Optional[Model[List[Doc], List[Floats2d]]] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """`fillm.LLMEncoder.v2`: token vectors from a decoder LLM (frozen, LoRA-tuned or run with a
    Tagalog adapter), for spaCy's tok2vec. Each group of settings is a config block
    (layers/encoder_settings.py); a block left out (None) has its function's defaults:

    model_name: an alias (`gemma3-270m`), a local Hugging Face directory, or a hub name
        already in the local Hugging Face cache (e.g. `SeaLLMs/SeaLLM-7B-v2.5`).
    width: output width per token (what listeners read).
    layers (`fillm.EncoderLayers.v1`): which hidden states are mixed, attention, pooling, final norm.
    lora (`fillm.EncoderLora.v1`): the encoder's own LoRA adapter (r = 0: the LLM stays frozen).
    contextualizer (`fillm.EncoderContextualizer.v1`): a BiLSTM over the token vectors.
    batching (`fillm.EncoderBatching.v1`): windows, batch size in pieces, the training cache.
    compute (`fillm.EncoderCompute.v1`): weight dtype, inference precision, torch.compile.
    language_adapter: "" or a directory written by `python -m fillm_spacy.adapt train`: the LLM
        runs with that Tagalog adapter, frozen (lora r must be 0; attention as the adapter was
        trained). The adapter's weights are saved inside the pipeline, so a trained pipeline
        loads where the directory does not exist.
    features: optional extra token features (e.g. spaCy's MultiHashEmbed + MaxoutWindowEncoder)
        concatenated with the LLM features: Tagalog affixes and reduplication live in characters.
    """
    from thinc.api import Maxout, chain, concatenate, noop, with_array

    from ..models.loading import load_base_llm
    from .bilstm import packed_bilstm

    layers = layers or encoder_layers_v1()
    lora = lora or encoder_lora_v1()
    contextualizer = contextualizer or encoder_contextualizer_v1()
    batching = batching or encoder_batching_v1()
    compute = compute or encoder_compute_v1()
    if contextualizer.reads_features and (features is None or contextualizer.width <= 0):
        raise ValueError("A contextualizer with reads_features = true needs `features` and a width > 0")
    llm = load_base_llm(model_name, dtype=compute.dtype)
    bilstm = None
    skip = contextualizer.skip
    if contextualizer.reads_features:  # the BiLSTM moves out of the torch module, after the concatenation
        n_features = features.get_dim("nO")
        bilstm = packed_bilstm(contextualizer.width, width + n_features, contextualizer.depth, contextualizer.dropout)
        contextualizer = ContextualizerSettings()
    encoder = build_llm_encoder(
        llm,
        width=width,
        layers=layers,
        lora=lora,
        contextualizer=contextualizer,
        batching=batching,
        compute=compute,
        language_adapter=language_adapter,
    )
    if features is None:
        return encoder
    mixer = with_array(Maxout(nO=width, nP=3, normalize=True, dropout=0.0))
    if bilstm is not None:
        contextual = concatenate(bilstm, noop()) if skip else bilstm
        combined = chain(concatenate(encoder, features), contextual, mixer)
    else:
        combined = chain(concatenate(encoder, features), mixer)
    combined.set_dim("nO", width)
    return combined


def llm_encoder_v1(
    model_name: str = "gemma3-270m",
    width: int = 256,
    lora_r: int = 16,
    lora_alpha: float = 32.0,
    lora_dropout: float = 0.05,
    target_modules: List[str] = ["q_proj", "v_proj"],  # noqa: B006 (confection reads the default)
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
    """`fillm.LLMEncoder.v1`: the same encoder as v2 with its settings flat, as pipelines saved
    before v2 have them (they load and run as trained). Each setting is v2's of the same
    meaning: lora_* → `lora`, first_layer/last_layer/layer_stride/attention/pooling/final_norm →
    `layers`, contextualizer_*/features_into_contextualizer → `contextualizer`, window/stride/
    max_batch_pieces/prefix_cache_mb → `batching`, dtype/precision/compiled → `compute`."""
    return llm_encoder_v2(
        model_name=model_name,
        width=width,
        layers=encoder_layers_v1(first_layer, last_layer, layer_stride, attention, pooling, final_norm),
        lora=encoder_lora_v1(lora_r, lora_alpha, lora_dropout, target_modules, lora_top_layers),
        contextualizer=encoder_contextualizer_v1(
            contextualizer_width,
            contextualizer_depth,
            contextualizer_dropout,
            features_into_contextualizer,
            contextualizer_skip,
        ),
        batching=encoder_batching_v1(window, stride, max_batch_pieces, prefix_cache_mb),
        compute=encoder_compute_v1(precision, compiled, dtype),
        language_adapter=language_adapter,
        features=features,
    )
