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
    trainable: bool = True,
) -> None:
    """Add a LoRA adapter to `llm`; its weights train (unless `trainable` is False), the base
    weights never do.

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
        set_trainable(llm, adapter_name, trainable)


def set_trainable(llm: BaseLLM, adapter_name: str, trainable: bool) -> None:
    """Say whether `adapter_name` trains (an encoder's adapter, a generative adapter while it is
    fine-tuned) and apply it to the whole shared model."""
    with llm.lock:
        (llm.trainable_adapters.add if trainable else llm.trainable_adapters.discard)(adapter_name)
        sync_trainable(llm)


def sync_trainable(llm: BaseLLM) -> None:
    """requires_grad exactly on the weights of the adapters that train; the base weights and
    every other adapter frozen. peft's set_adapter / disable_adapter / add_adapter / load_adapter
    change requires_grad as they go (set_adapter freezes every inactive adapter), so every use of
    the shared model calls this after them: an encoder's adapter must still require grad when a
    later component's forward pass (a listener's copy, a generation) ran in between its forward
    and its backward."""
    markers = [f".{name}." for name in llm.trainable_adapters]
    for param_name, param in llm.model.named_parameters():
        param.requires_grad_(any(marker in param_name for marker in markers))


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
                sync_trainable(llm)
                yield
            sync_trainable(llm)
        else:
            llm.peft_model.base_model.set_adapter(adapter_name)
            sync_trainable(llm)
            yield


def adapter_parameters(llm: BaseLLM, adapter_name: str):
    """(name, parameter) pairs of one adapter (under the lock: an encoder's forward pass swaps
    the decoder's layer list, which would renumber the names)."""
    with llm.lock:
        return [(n, p) for n, p in llm.model.named_parameters() if f".{adapter_name}." in n]
