"""Docs → the frozen LLM's state per spaCy token, outside a pipeline.

What the encoder reads before its own trained modules: each chosen layer's output, pooled
from pieces to tokens exactly as the encoder pools them (same windows, alignment and pooling).
Used by probes, LLM-derived static vectors and benchmarks, so they all measure what the
encoder sees.
"""

from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from spacy.tokens import Doc
from spacy.util import minibatch

from ..models.adapters import LanguageAdapter
from ..models.loading import BaseLLM
from .encoder_batch import docs_to_batch
from .encoder_settings import BatchSettings, LayerSettings
from .llm_encoder_module import LLMEncoderModule


def doc_token_states(
    llm: BaseLLM,
    docs: Iterable[Doc],
    layers: Sequence[int],
    *,
    attention: str = "causal",
    adapter_name: Optional[str] = None,
    pooling: str = "last",
    window: int = 256,
    stride: int = 192,
    batch_size: int = 32,
    max_batch_pieces: int = 4096,
) -> Iterator[Tuple[Doc, np.ndarray]]:
    """(doc, states) for each doc: states is float32 (len(doc), len(layers), hidden), the
    layers in the order given (0 = embeddings, k = decoder layer k's own output).

    attention: "causal" or "bidirectional" (as the encoder's setting of that name).
    adapter_name: a LoRA adapter on `llm` to run with (None: the plain base model).
    """
    n_layers = llm.config.num_hidden_layers
    if not layers or not all(0 <= layer <= n_layers for layer in layers):
        raise ValueError(f"layers must be in 0..{n_layers} (the base model's layers), got {list(layers)}")
    order = sorted(set(layers))
    module = LLMEncoderModule(
        llm,
        1,
        LayerSettings(tuple(order), attention),
        batching=BatchSettings(max_batch_pieces=max_batch_pieces),
        # An adapter it runs with is frozen here, as a language adapter is.
        language_adapter=LanguageAdapter(path="", name=adapter_name) if adapter_name else None,
    ).eval()
    to_batch = docs_to_batch(llm, window, stride, attention == "causal", pooling)
    columns = [order.index(layer) for layer in layers]
    for batch in minibatch(docs, batch_size):
        batch: List[Doc] = list(batch)
        inputs, _ = to_batch(None, batch, False)
        with torch.inference_mode():
            states = module.token_states(*inputs.args, mix=False).float().cpu().numpy()[:, columns]
        start = 0
        for doc in batch:
            yield doc, states[start : start + len(doc)]
            start += len(doc)
