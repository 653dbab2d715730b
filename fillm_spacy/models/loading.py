"""Resolve a base-model name to one loaded causal LM per process.

Every component that names the same base model (the encoder, spacy-llm pipes, the
summarizer) gets the same `BaseLLM`; each use adds its own named LoRA adapter to it,
so a new task costs megabytes, not another copy of the LLM.
"""

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Set, Tuple

import torch

from .gguf import GEMMA3_270M_ALIAS, SOURCE_FILE, ensure_gemma3_270m

DEFAULT_MODEL = GEMMA3_270M_ALIAS
ALIASES = {GEMMA3_270M_ALIAS: ensure_gemma3_270m}


class BaseModelNotFound(OSError):
    """The base model cannot be found offline."""


@dataclass
class BaseLLM:
    """A frozen causal LM with its tokenizer. `peft_model` appears once an adapter is added."""

    name: str
    path: str
    model: torch.nn.Module
    tokenizer: object
    fingerprint: Dict[str, object]
    peft_model: Optional[torch.nn.Module] = None
    trainable_adapters: Set[str] = field(default_factory=set)  # see models.adapters.sync_trainable
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def decoder(self) -> torch.nn.Module:
        """The transformer stack without the LM head (no 256k-wide logits for encoding)."""
        return self.model.get_decoder()

    @property
    def config(self):
        return self.model.config

    def capped_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The LM head's logits as the model finishes them: Gemma 2/3 soft-cap them
        (config.final_logit_softcapping), others leave them as they are."""
        cap = getattr(self.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device


_LOADED: Dict[Tuple[str, str], BaseLLM] = {}  # (resolved model directory, dtype)
_LOADING_LOCK = threading.Lock()


def _one_thread_in_forked_child() -> None:
    # GNU OpenMP's thread pool does not survive fork(): the first matmul in a child forked by
    # nlp.pipe(n_process=N) would wait forever on the parent's threads. One thread per
    # process is also the right split of a small CPU between N processes.
    torch.set_num_threads(1)


def resolve_path(name: str) -> Path:
    """A local directory holding the model named `name` (an alias, a path, or a hub name
    already in the Hugging Face cache). Never downloads."""
    if name in ALIASES:
        return ALIASES[name]()
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise BaseModelNotFound(f"Base model directory '{local}' has no config.json: not a Hugging Face model.")
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as err:
        raise BaseModelNotFound(
            f"Base model '{name}' is not available offline: it is not an alias ({', '.join(ALIASES)}), "
            f"not a local directory, and not in the Hugging Face cache. Fetch it once where a hub is "
            f"reachable (`huggingface-cli download {name}`) or set model_name to a local directory."
        ) from err


def weights_fingerprint(name: str, path: Path, model: torch.nn.Module) -> Dict[str, object]:
    """What identifies a base model: adapters trained on one must not be loaded on another."""
    config = model.config
    embedding = model.get_input_embeddings().weight
    probe = embedding[: min(64, embedding.shape[0])].detach().to(torch.float64)
    digest = hashlib.sha256(json.dumps(round(float(probe.abs().sum()), 3)).encode()).hexdigest()[:16]
    fingerprint = {
        "name": name,
        "model_type": config.model_type,
        "hidden_size": int(config.hidden_size),
        "num_hidden_layers": int(config.num_hidden_layers),
        "vocab_size": int(config.vocab_size),
        "embedding_digest": digest,
    }
    source = path / SOURCE_FILE
    if source.exists():
        fingerprint["gguf_sha256"] = json.loads(source.read_text())["gguf_sha256"]
    return fingerprint


def load_base_llm(name: str = DEFAULT_MODEL, device: Optional[str] = None, dtype: str = "float32") -> BaseLLM:
    """The process-wide `BaseLLM` for `name` and `dtype`, loading it on first use.

    One copy per model directory and dtype, whatever spelling names it (an alias, a path, a hub
    name), so a GPU process never holds two 7B models. device None leaves the shared copy where it
    is (on the CPU when first loaded; the encoder's thinc shim places it with the pipeline); a
    device named explicitly places a new copy there, and for a copy already loaded elsewhere it is
    an error rather than a silent move under the components that share it.
    """
    path = resolve_path(name)
    key = (str(path.resolve()), dtype)
    with _LOADING_LOCK:
        if key in _LOADED:
            llm = _LOADED[key]
            if device is not None and torch.device(device) != llm.device:
                raise ValueError(
                    f"Base model '{name}' is already loaded on {llm.device} for another component; moving it to "
                    f"{device} would move it under that component too. Give every component that shares it the "
                    f"same device (or none), or run them in separate processes."
                )
            return llm
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # AutoModelForCausalLM, never AutoModel: AutoModel on a Gemma3ForCausalLM checkpoint
        # silently loads no weights. Missing weights are an error, not a warning.
        model, info = AutoModelForCausalLM.from_pretrained(
            str(path), torch_dtype=getattr(torch, dtype), output_loading_info=True
        )
        missing = [key for key in info.get("missing_keys", []) if "lm_head" not in key]
        if missing:
            raise BaseModelNotFound(f"Base model '{name}' at {path} is missing weights: {missing[:5]}")
        model.requires_grad_(False)
        model.eval()
        model.to(device or "cpu")
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        if not getattr(tokenizer, "is_fast", False):
            raise BaseModelNotFound(f"Base model '{name}' has no fast tokenizer; character offsets are required.")
        llm = BaseLLM(
            name=name,
            path=str(path),
            model=model,
            tokenizer=tokenizer,
            fingerprint=weights_fingerprint(name, path, model),
        )
        if not _LOADED:  # a process that holds an LLM may fork workers (nlp.pipe(n_process=N))
            os.register_at_fork(after_in_child=_one_thread_in_forked_child)
        _LOADED[key] = llm
        return llm


def check_fingerprint(expected: Dict[str, object], llm: BaseLLM, what: str) -> None:
    """Refuse weights trained on another base model, naming both."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "embedding_digest", "gguf_sha256")
    diffs = {k: (expected.get(k), llm.fingerprint.get(k)) for k in keys if expected.get(k) != llm.fingerprint.get(k)}
    if diffs:
        raise ValueError(
            f"{what} was trained on base model '{expected.get('name')}' but the loaded base model is "
            f"'{llm.name}' (differences: {diffs}). Set model_name to the base model it was trained on."
        )
