"""The frozen LLM layers compiled with torch.compile for inference.

A frozen layer's computation never changes, so at inference it can run as one graph that
torch's inductor compiles for this machine (fused element-wise work, fewer dispatches); the first
documents pay the compilation (seconds to a minute per process), the rest run faster. Shapes are
dynamic (windows differ in length), so one compiled graph serves every batch. Only for encoders
without a LoRA adapter (a compiled graph would not see the adapter switch of a shared base).
Where compilation fails (e.g. no C compiler for inductor) the layers run as they are, with one log
line.
"""

import contextlib
import logging
import weakref
from typing import Iterable

import torch

logger = logging.getLogger("fillm_spacy")
_COMPILED: "weakref.WeakKeyDictionary[torch.nn.Module, object]" = weakref.WeakKeyDictionary()
_STATE = {"failed": False}


def compilation_failed() -> bool:
    return _STATE["failed"]


def give_up(error: BaseException) -> None:
    """Run eager from now on in this process, saying why once."""
    if not _STATE["failed"]:
        _STATE["failed"] = True
        first = (str(error).strip().splitlines() or [""])[0][:200]
        logger.warning(
            "compiled=true: torch.compile failed (%s: %s); the LLM layers run uncompiled.", type(error).__name__, first
        )


@contextlib.contextmanager
def compiled_forwards(layers: Iterable[torch.nn.Module]):
    """Within the block, each layer's forward is its compiled version (made once per layer and
    process). The caller holds the base model's lock, so no other forward sees the swap."""
    swapped = []
    try:
        for layer in layers:
            compiled = _COMPILED.get(layer)
            if compiled is None:
                compiled = _COMPILED[layer] = torch.compile(layer.forward, dynamic=True)
            swapped.append((layer, layer.__dict__.get("forward")))
            layer.forward = compiled
        yield
    finally:
        for layer, own in swapped:
            if own is None:
                del layer.forward
            else:
                layer.forward = own
