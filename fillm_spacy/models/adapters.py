"""Named LoRA adapters on the shared base model (peft), one per use."""
import contextlib
import itertools
from typing import Iterator, List, Optional, Sequence

from .loading import BaseLLM

_adapter_ids = itertools.count()


def new_adapter_name(prefix: str) -> str:
    """Adapter names are unique per process: two pipelines with an 'encoder' adapter must not share it."""
    return f"{prefix}-{next(_adapter_ids)}"


def add_lora_adapter(
    llm: BaseLLM,
    adapter_name: str,
    *,
    r: int,
    alpha: float,
    dropout: float,
    target_modules: List[str],
    layers: Optional[Sequence[int]] = None,
) -> None:
    """Add a LoRA adapter to `llm`; its weights train, the base weights never do.

    layers: 0-based indices of the decoder layers that get LoRA (peft's `layers_to_transform`);
    None: every layer. An encoder that runs 4 of 18 layers puts LoRA on those 4 only.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        layers_to_transform=list(layers) if layers is not None else None,
        bias="none",
    )
    with llm.lock:
        if llm.peft_model is None:
            llm.peft_model = get_peft_model(llm.model, config, adapter_name=adapter_name)
        else:
            llm.peft_model.add_adapter(adapter_name, config)
        # peft un-freezes only the adapter; keep everything else frozen, whatever it did.
        train_only(llm, adapter_name)


def train_only(llm: BaseLLM, adapter_name: Optional[str]) -> None:
    """Mark `adapter_name`'s weights trainable and every other weight of the base model frozen
    (None: freeze everything). peft's set_adapter / add_adapter / load_adapter un-freeze the
    adapter they touch, so each use of the shared model calls this to restore its own setting."""
    marker = f".{adapter_name}." if adapter_name is not None else None
    for param_name, param in llm.model.named_parameters():
        param.requires_grad_(marker is not None and marker in param_name)


@contextlib.contextmanager
def active_adapter(llm: BaseLLM, adapter_name: Optional[str]) -> Iterator[None]:
    """Run the base model with `adapter_name` active, or with no adapter at all (None)."""
    with llm.lock:
        if llm.peft_model is None:
            if adapter_name is not None:
                raise KeyError(f"No adapter '{adapter_name}' on base model '{llm.name}'")
            yield
        elif adapter_name is None:
            with llm.peft_model.disable_adapter():
                yield
        else:
            llm.peft_model.base_model.set_adapter(adapter_name)
            # set_adapter marks the active adapter trainable; only ours may be.
            yield


def adapter_parameters(llm: BaseLLM, adapter_name: str):
    """(name, parameter) pairs of one adapter."""
    return [(n, p) for n, p in llm.model.named_parameters() if f".{adapter_name}." in n]
