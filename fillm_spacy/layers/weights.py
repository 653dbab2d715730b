"""Tensors to and from safetensors bytes: what every saved weight of this package is written as
(loading safetensors reads tensors only; a pickle could run code from a tampered pipeline)."""

import torch


def tensors_to_bytes(tensors: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}) if tensors else b""


def tensors_from_bytes(data: bytes) -> dict:
    from safetensors.torch import load

    return load(data) if data else {}


def module_to_bytes(module: torch.nn.Module) -> bytes:
    """A torch module's state dict as safetensors (thinc's `serialize_model` hook)."""
    return tensors_to_bytes(module.state_dict())
