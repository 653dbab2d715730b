"""Int8 dynamic quantization of a pipeline's LLM encoders (the base LLM's linear layers) for CPU
inference (`bench --int8`): a tool on a loaded pipeline, not a component."""

from typing import Iterator, List

import torch
from spacy.language import Language

from ..layers.llm_encoder_module import LLMEncoderModule
from ..layers.llm_shim import LLMShim


def llm_encoder_modules(nlp: Language) -> Iterator[LLMEncoderModule]:
    """The torch modules of every LLM encoder in the pipeline."""
    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if model is None or not hasattr(model, "walk"):
            continue
        for node in model.walk():
            for shim in node.shims:
                if isinstance(shim, LLMShim):
                    yield shim._model


def quantize_for_inference(nlp: Language) -> List[str]:
    """Int8 dynamic quantization of the base LLM's linear layers (CPU inference only).

    The LoRA matrices stay in float (they are tiny, and peft reads their dtype); only the
    frozen base projections are quantized. The pipeline can no longer be trained afterwards.
    Returns the names of the quantized layers.
    """
    quantized: List[str] = []
    for module in llm_encoder_modules(nlp):
        decoder = module.llm.decoder
        names = {
            name
            for name, layer in decoder.named_modules()
            if isinstance(layer, torch.nn.Linear) and "lora_" not in name
        }
        if names:
            torch.ao.quantization.quantize_dynamic(decoder, qconfig_spec=names, dtype=torch.qint8, inplace=True)
            quantized.extend(sorted(names))
    return quantized
