"""Tiny random Gemma models (SeaLLM's GemmaConfig and Gemma 3's Gemma3TextConfig), built
in fixtures: no download, a train step in well under a second."""

import random
from pathlib import Path
from typing import List

import numpy as np
import pytest
import spacy
import torch
from spacy.training import Example
from spacy.training.converters import conllu_to_docs

DATA = Path(__file__).parent / "data"
SAMPLE_CONLLU = DATA / "newscrawl-sample.conllu"
CONFIGS = Path(__file__).parent.parent / "configs"
TL_FILLM_CONFIG = CONFIGS / "tl_fillm_sm.cfg"
# tl_fillm_lg's mixed layers (4, 8, 12) scaled to the tiny models' three layers.
TINY_LG_LAYERS = {
    "components.tok2vec.model.layers.first": 1,
    "components.tok2vec.model.layers.last": 3,
    "components.tok2vec.model.layers.stride": 1,
}


def hash_embed_tok2vec(width: int) -> dict:
    """Config of a small spaCy tok2vec component (no LLM) for tests of the heads that listen to it."""
    model = {"@architectures": "spacy.HashEmbedCNN.v2", "width": width, "depth": 1, "embed_size": 500}
    model.update({"window_size": 1, "maxout_pieces": 2, "subword_features": True, "pretrained_vectors": None})
    return {"model": model}


def sample_docs(n: int = 60) -> List[spacy.tokens.Doc]:
    """Gold docs (one sentence each) from the shipped NewsCrawl sample, multiword tokens merged."""
    text = SAMPLE_CONLLU.read_text(encoding="utf8")
    docs = list(conllu_to_docs(text, n_sents=1, merge_subtokens=True, append_morphology=False, no_print=True))
    return docs[:n]


def sample_texts() -> List[str]:
    return [doc.text for doc in sample_docs()]


def make_tiny_model_dir(path: Path, kind: str) -> Path:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GemmaConfig, GemmaForCausalLM

    from fillm_spacy.models.tokenizer import train_gemma_style_tokenizer

    torch.manual_seed(0)
    tokenizer = train_gemma_style_tokenizer(sample_texts(), vocab_size=700)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if kind == "gemma":  # SeaLLM-7B-v2.5's architecture, tiny
        model = GemmaForCausalLM(GemmaConfig(**common))
    else:
        model = Gemma3ForCausalLM(Gemma3TextConfig(sliding_window=64, **common))
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def save_tiny_tl_fillm(model_dir: Path, path: Path, config: Path = TL_FILLM_CONFIG, steps: int = 2, **extra) -> Path:
    """A shipped tl_fillm config (sm by default) on a tiny base model, trained a few steps and
    saved to `path` (after `steps` updates: 2 leaves every head near its initial guess).
    `extra`: more config overrides, e.g. {"training.optimizer.learn_rate.warmup_steps": 1}."""
    overrides = {
        "components.tok2vec.model.model_name": str(model_dir),
        **(TINY_LG_LAYERS if config.name == "tl_fillm_lg.cfg" else {"components.tok2vec.model.layers.last": 3}),
        "components.tok2vec.model.width": 32,
        "components.tok2vec.model.contextualizer.width": 32,
        "components.tok2vec.model.features.embed.include_static_vectors": False,  # no vectors here
        "components.tok2vec.model.batching.window": 64,
        "components.tok2vec.model.batching.stride": 48,
        "components.parser.model.arc_mlp_width": 32,
        "components.parser.model.label_mlp_width": 16,
        **extra,
    }
    config = spacy.util.load_config(config, overrides=overrides, interpolate=True)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    docs = sample_docs(20)
    # NER annotation on a few docs so the ner head has labels
    for doc in docs[:5]:
        doc.ents = [doc.char_span(0, len(doc[0].text), label="PER")]
    examples = [Example(nlp.make_doc(d.text), d) for d in docs]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
        optimizer.step_schedules()  # as spaCy's training loop: the learning rate starts at 0
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-gemma"), "gemma")


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-gemma3"), "gemma3")


@pytest.fixture(scope="session", params=["gemma", "gemma3"])
def tiny_model_dir(request, tiny_gemma_dir, tiny_gemma3_dir) -> Path:
    return tiny_gemma_dir if request.param == "gemma" else tiny_gemma3_dir


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine thread spinning
    makes them several times slower; restored for other modules."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def seeded():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    spacy.util.fix_random_seed(0)


@pytest.fixture
def gold_examples() -> List[Example]:
    nlp = spacy.blank("tl")
    return [Example(nlp.make_doc(doc.text), doc) for doc in sample_docs()]
