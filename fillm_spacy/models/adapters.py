"""Named LoRA adapters on the shared base model (peft), one per use."""

import contextlib
import itertools
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Tuple

from .loading import BaseLLM

_adapter_ids = itertools.count()


def new_adapter_name(prefix: str) -> str:
    """Adapter names are unique per process: two pipelines with an 'encoder' adapter must not share it."""
    return f"{prefix}-{next(_adapter_ids)}"


@dataclass(frozen=True)
class LoraSettings:
    """A LoRA adapter's shape: rank, scaling, dropout, the projections it adapts, and the
    decoder layers that get it (0-based, peft's `layers_to_transform`; None: every layer; an
    encoder that runs 4 of 18 layers puts LoRA on those 4 only).

    top_layers: as an encoder's setting, LoRA on the top N of the layers it runs (0: all of
        them); the encoder's builder turns it into `layers`.
    """

    r: int
    alpha: float
    dropout: float
    target_modules: Tuple[str, ...]
    layers: Optional[Tuple[int, ...]] = None
    top_layers: int = 0


def add_lora_adapter(llm: BaseLLM, adapter_name: str, settings: LoraSettings, trainable: bool = True) -> None:
    """Add a LoRA adapter to `llm`; its weights train (unless `trainable` is False), the base
    weights never do."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        layers_to_transform=list(settings.layers) if settings.layers is not None else None,
        bias="none",
    )
    with llm.lock:
        if llm.peft_model is None:
            llm.peft_model = get_peft_model(llm.model, config, adapter_name=adapter_name)
        else:
            llm.peft_model.add_adapter(adapter_name, config)
        set_trainable(llm, adapter_name, trainable)


def remove_adapter(llm: BaseLLM, adapter_name: str) -> None:
    """Take an adapter off the shared model (one whose training failed)."""
    with llm.lock:
        llm.trainable_adapters.discard(adapter_name)
        if llm.peft_model is not None and adapter_name in llm.peft_model.peft_config:
            llm.peft_model.delete_adapter(adapter_name)
        sync_trainable(llm)


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


# A Tagalog-adapted base (fillm_spacy.adapt) is a LoRA adapter in peft's own directory layout,
# plus what fillm needs to use it correctly.
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_META = "fillm_adapter.json"


class AdapterNotFound(OSError):
    """A language adapter directory is missing or unreadable."""


def adapter_state(llm: BaseLLM, adapter_name: str) -> dict:
    """The adapter's weights under peft's saved names (no adapter name in them)."""
    from peft import get_peft_model_state_dict

    with llm.lock:
        state = get_peft_model_state_dict(llm.peft_model, adapter_name=adapter_name)
    return {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}


def adapter_config(llm: BaseLLM, adapter_name: str) -> dict:
    """The adapter's LoraConfig as a JSON-ready dict."""
    config = llm.peft_model.peft_config[adapter_name].to_dict()
    return json.loads(json.dumps(config, default=lambda value: sorted(value) if isinstance(value, set) else str(value)))


def restore_adapter(llm: BaseLLM, adapter_name: str, config: dict, state: dict, trainable: bool = False) -> None:
    """Add `adapter_name` to `llm` from a saved LoraConfig dict and weights (peft's names)."""
    from peft import LoraConfig, set_peft_model_state_dict

    fields = {k: v for k, v in config.items() if k in LoraConfig.__dataclass_fields__}
    fields.pop("base_model_name_or_path", None)
    lora = LoraConfig(**fields)
    with llm.lock:
        if llm.peft_model is None:
            from peft import get_peft_model

            llm.peft_model = get_peft_model(llm.model, lora, adapter_name=adapter_name)
        else:
            llm.peft_model.add_adapter(adapter_name, lora)
        result = set_peft_model_state_dict(llm.peft_model, state, adapter_name=adapter_name)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        ours = [name for name, _ in llm.model.named_parameters() if f".{adapter_name}." in name]
        if unexpected or len(ours) != len(state):
            raise ValueError(
                f"The saved adapter's weights do not fit its config ({len(state)} tensors for {len(ours)} "
                f"parameters; unexpected {unexpected[:3]}): the adapter files are corrupt or mismatched."
            )
        set_trainable(llm, adapter_name, trainable)


def save_adapter(llm: BaseLLM, adapter_name: str, directory: Path, meta: dict) -> None:
    """Write `adapter_name` in peft's layout (adapter_config.json, adapter_model.safetensors)
    with `meta` and the base model's fingerprint in fillm_adapter.json; all or nothing."""
    from safetensors.torch import save_file

    directory = Path(directory)
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / ADAPTER_CONFIG).write_text(json.dumps(adapter_config(llm, adapter_name), indent=2) + "\n")
    save_file(adapter_state(llm, adapter_name), str(partial / ADAPTER_WEIGHTS))
    full_meta = {**meta, "fingerprint": llm.fingerprint}
    (partial / ADAPTER_META).write_text(json.dumps(full_meta, indent=2) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)


def read_adapter(directory: Path) -> Tuple[dict, dict, dict]:
    """(LoraConfig dict, weights, meta) of an adapter directory written by `save_adapter`;
    a missing or corrupt directory is one AdapterNotFound line saying what to do."""
    from safetensors.torch import load_file

    directory = Path(directory)
    hint = "Point language_adapter at a directory written by `python -m fillm_spacy.adapt train`."
    missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_META) if not (directory / name).is_file()]
    if missing:
        raise AdapterNotFound(f"Language adapter '{directory}' lacks {', '.join(missing)}. {hint}")
    try:
        config = json.loads((directory / ADAPTER_CONFIG).read_text())
        meta = json.loads((directory / ADAPTER_META).read_text())
        state = load_file(str(directory / ADAPTER_WEIGHTS))
    except Exception as error:
        raise AdapterNotFound(
            f"Language adapter '{directory}' is unreadable ({type(error).__name__}: {error}). {hint}"
        ) from None
    if not isinstance(config, dict) or not isinstance(meta, dict) or config.get("peft_type") != "LORA":
        raise AdapterNotFound(f"Language adapter '{directory}' is not a LoRA adapter. {hint}")
    return config, state, meta


def load_language_adapter(llm: BaseLLM, directory: Path) -> Tuple[str, dict]:
    """Add the language adapter saved in `directory` to `llm`, frozen, under a new name;
    (that name, its meta). Refuses an adapter trained on another base model."""
    from .loading import check_fingerprint

    config, state, meta = read_adapter(directory)
    check_fingerprint(meta.get("fingerprint", {}), llm, f"Language adapter '{directory}'")
    name = new_adapter_name("language")
    restore_adapter(llm, name, config, state, trainable=False)
    return name, meta


@dataclass
class LanguageAdapter:
    """The frozen language adapter an encoder runs with (fillm_spacy.adapt).

    path: the directory it was read from, as the config names it.
    name: its name on the shared base model once added (None until then: a pipeline loaded
        where that directory does not exist gets the adapter from its own saved weights).
    meta: fillm_adapter.json (objective, attention, the base model's fingerprint, ...).
    """

    path: str
    name: Optional[str] = None
    meta: dict = field(default_factory=dict)

    def check_attention(self, attention: str) -> None:
        trained = self.meta.get("attention", "causal")
        if trained != attention:
            raise ValueError(
                f"Language adapter '{self.path}' was trained with {trained} attention (objective "
                f'{self.meta.get("objective")}): set the encoder\'s layers.attention = "{trained}".'
            )
