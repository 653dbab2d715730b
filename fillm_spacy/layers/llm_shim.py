"""The thinc shim of the LLM encoder: optimizer updates, parameter averages, copies and
serialization that concern only what this encoder owns (its LoRA adapter and its own modules),
never the shared, frozen base weights.
"""

import contextlib
import re

import srsly
import torch
from thinc.api import PyTorchShim, torch2xp, xp2torch

from ..models.adapters import (
    adapter_config,
    adapter_parameters,
    adapter_state,
    add_lora_adapter,
    new_adapter_name,
    restore_adapter,
)
from ..models.loading import check_fingerprint
from .llm_encoder_module import LLMEncoderModule
from .weights import tensors_from_bytes, tensors_to_bytes

# Version of what to_bytes writes. 2: features are the layers' own outputs; files written before
# (no "format") were trained on HF's final norm over the last layer run, so they are refused.
FORMAT = 2


class LLMShim(PyTorchShim):
    """A PyTorchShim whose state is the encoder's adapter and own weights."""

    def predict(self, inputs):
        self._model.eval()
        with torch.inference_mode():
            return self._model(*inputs.args, **inputs.kwargs)

    def finish_update(self, optimizer) -> None:
        for name, param in self._model.trainable_named_parameters():
            if param.grad is None:
                continue
            if not self._grad_scaler.found_inf:  # skip the step if a gradient overflowed
                value, _ = optimizer((self.id, name), torch2xp(param.data), torch2xp(param.grad))
                param.data = xp2torch(value, requires_grad=True, device=param.device)
            param.grad.zero_()
        self._grad_scaler.update()

    @contextlib.contextmanager
    def use_params(self, params):
        # The optimizer keys its averages as finish_update names them: (shim id, parameter name).
        update = {
            key[1]: xp2torch(value, device=self.device)
            for key, value in params.items()
            if isinstance(key, tuple) and len(key) == 2 and key[0] == self.id
        }
        if not update:
            yield
            return
        current = dict(self._model.named_parameters())
        backup = {k: current[k].detach().clone() for k in update}
        with torch.no_grad():
            for k, v in update.items():
                current[k].copy_(v)
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in backup.items():
                    current[k].copy_(v)

    def to_device(self, device_type: str, device_id: int):
        self._model.prefix_cache.clear()  # cached states live on the old device
        super().to_device(device_type, device_id)

    def copy(self) -> "LLMShim":
        """What `Model.copy()` calls (spaCy's `replace_listeners`, sourcing a component): the copy
        shares the base LLM (one per process; its lock cannot be deep-copied anyway) and gets an
        adapter of its own holding the same weights, and copies of the encoder's own modules."""
        module: LLMEncoderModule = self._model
        adapter_name = None
        if module.adapter_name is not None:
            adapter_name = new_adapter_name("encoder")
            add_lora_adapter(module.llm, adapter_name, module.lora)
            source = dict(adapter_parameters(module.llm, module.adapter_name))
            with torch.no_grad():
                for name, param in adapter_parameters(module.llm, adapter_name):
                    param.copy_(source[name.replace(f".{adapter_name}.", f".{module.adapter_name}.")])
        copied = LLMEncoderModule(
            module.llm,
            module.width,
            module.layer_settings,
            lora=module.lora,
            adapter_name=adapter_name,
            **module.settings(),
        )
        copied.load_state_dict(module.own_state(), strict=False)
        copied.train(module.training)
        return LLMShim(copied, config=dict(self.cfg), mixed_precision=self._mixed_precision, device=self.device)

    def to_bytes(self) -> bytes:
        module: LLMEncoderModule = self._model
        adapter = {}
        if module.adapter_name is not None:
            adapter = {
                n.replace(f".{module.adapter_name}.", ".adapter."): p.detach().cpu()
                for n, p in adapter_parameters(module.llm, module.adapter_name)
            }
        msg = {
            "format": FORMAT,
            "fingerprint": module.llm.fingerprint,
            "adapter": tensors_to_bytes(adapter),
            "own": tensors_to_bytes({k: v.cpu() for k, v in module.own_state().items()}),
        }
        language = module.language_adapter
        if language is not None:
            name = module.active_adapter_name  # an encoder never loaded with its adapter has nothing to save
            msg["language_adapter"] = {
                "config": adapter_config(module.llm, name),
                "weights": tensors_to_bytes(adapter_state(module.llm, name)),
                "meta": language.meta,
            }
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "LLMShim":
        module: LLMEncoderModule = self._model
        try:
            msg = srsly.msgpack_loads(bytes_data)
            adapter = tensors_from_bytes(msg["adapter"])
            own = tensors_from_bytes(msg["own"])
            fingerprint = msg["fingerprint"]
        except Exception as err:
            raise ValueError(
                "The LLM encoder's saved weights (tok2vec/model) are corrupt or not from fillm_spacy: "
                f"{type(err).__name__}: {err}. Re-train or re-copy the pipeline directory."
            ) from err
        if msg.get("format") != FORMAT:
            raise ValueError(
                f"The LLM encoder's saved weights are in format {msg.get('format', 1)}, this fillm_spacy reads "
                f"format {FORMAT} (since format 2 the features are the layers' own outputs, without the "
                "model's final norm): re-train the pipeline with this version."
            )
        module.prefix_cache.clear()  # states of the old weights' windows
        check_fingerprint(fingerprint, module.llm, "The saved LLM encoder")
        self.load_language_adapter(msg.get("language_adapter"))
        device = self.device
        if bool(adapter) != (module.adapter_name is not None):
            raise ValueError("The saved LLM encoder's LoRA setting (lora_r) differs from its config.")
        if adapter:
            params = dict(adapter_parameters(module.llm, module.adapter_name))
            renamed = {n.replace(".adapter.", f".{module.adapter_name}."): v for n, v in adapter.items()}
            if set(renamed) != set(params):
                raise ValueError(
                    "The saved LoRA adapter does not match the encoder's LoRA config (r, target_modules, layers)."
                )
            with torch.no_grad():
                for name, value in renamed.items():
                    params[name].copy_(value.to(device))
        # Encoders saved when the contextualizer was a bare torch LSTM keep its weights one level up.
        own = {re.sub(r"^contextualizer\.(?!lstm\.)", "contextualizer.lstm.", k): v for k, v in own.items()}
        missing, unexpected = module.load_state_dict({k: v.to(device) for k, v in own.items()}, strict=False)
        missing = [k for k in missing if not k.startswith("base.")]
        if missing or unexpected:
            raise ValueError(
                f"The saved LLM encoder does not match its config: missing {missing}, unexpected {unexpected}"
            )
        return self

    def load_language_adapter(self, saved) -> None:
        """Put the saved language adapter's weights on the base model: into the adapter the config
        already loaded from its directory, or into a new one where that directory is absent."""
        module: LLMEncoderModule = self._model
        language = module.language_adapter
        if (saved is None) != (language is None):
            raise ValueError(
                "The saved LLM encoder's language adapter setting differs from its config (language_adapter): "
                "load it with the config it was saved with."
            )
        if saved is None:
            return
        try:
            config, state, meta = saved["config"], tensors_from_bytes(saved["weights"]), saved["meta"]
        except Exception as err:
            raise ValueError(
                f"The LLM encoder's saved language adapter is corrupt ({type(err).__name__}: {err})."
            ) from err
        if language.name is None:
            language.name, language.meta = new_adapter_name("language"), meta
            restore_adapter(module.llm, language.name, config, state, trainable=False)
        else:
            from peft import set_peft_model_state_dict

            ours = adapter_config(module.llm, language.name)
            keys = ("r", "lora_alpha", "target_modules", "layers_to_transform")
            if any(_normalized(ours.get(k)) != _normalized(config.get(k)) for k in keys):
                raise ValueError(
                    f"The language adapter at '{language.path}' is not the one this pipeline was trained with "
                    f"(its LoRA settings differ): remove language_adapter's directory or point it at the right one."
                )
            with module.llm.lock:
                set_peft_model_state_dict(module.llm.peft_model, state, adapter_name=language.name)
            language.meta = meta
        language.check_attention(module.attention)


def _normalized(value):
    return sorted(value) if isinstance(value, (list, tuple, set)) else value
