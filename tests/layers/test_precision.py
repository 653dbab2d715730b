"""Lower-precision frozen layers at inference: the heads read the float32 features within a
stated tolerance, and a CPU without fast bfloat16 falls back with one log line."""

import logging

import numpy as np
import pytest
import spacy
import torch

from fillm_spacy.layers import precision
from fillm_spacy.layers.llm_encoder import llm_encoder_v1

from ..conftest import sample_texts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def encoder(model_dir, **overrides):
    model = llm_encoder_v1(
        model_name=str(model_dir), width=16, lora_r=0, first_layer=1, last_layer=3, window=32, stride=24, **overrides
    )
    model.initialize()
    return model


@pytest.fixture
def docs():
    nlp = spacy.blank("tl")
    return [nlp(text) for text in sample_texts()[:12]] + [nlp(""), nlp("🙂 <eos>")]


@pytest.mark.parametrize("kind", ["gemma", "gemma3"])
def test_bfloat16_layers_give_the_float32_features_within_tolerance(
    tiny_gemma_dir, tiny_gemma3_dir, docs, kind, monkeypatch
):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)  # autocast runs on any x86 CPU
    model_dir = tiny_gemma_dir if kind == "gemma" else tiny_gemma3_dir
    torch.manual_seed(0)
    full = encoder(model_dir, precision="float32")
    half = encoder(model_dir, precision="bfloat16")
    half.from_bytes(full.to_bytes())  # the same trained weights, another precision
    a, b = full.predict(docs), half.predict(docs)
    assert [x.shape for x in a] == [x.shape for x in b]
    a, b = np.concatenate(a), np.concatenate(b)
    assert b.dtype == np.float32 and not np.array_equal(a, b)  # bfloat16 really ran
    # Stated tolerance: bfloat16 keeps 8 bits of mantissa (relative error ~0.4% per product).
    scale = np.abs(a).mean()
    assert np.abs(a - b).mean() < 0.02 * scale and np.abs(a - b).max() < 0.2 * np.abs(a).max()


def test_auto_is_float32_without_fast_bfloat16_and_bfloat16_with_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert precision.inference_dtype("auto", cpu) is None
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.inference_dtype("auto", cpu) is torch.bfloat16
    assert precision.inference_dtype("float32", cpu) is None


def test_bfloat16_without_the_instruction_set_falls_back_with_one_log_line(tiny_gemma3_dir, docs, monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(precision, "_FELL_BACK", set())
    torch.manual_seed(0)
    full = encoder(tiny_gemma3_dir, precision="float32")
    asked = encoder(tiny_gemma3_dir, precision="bfloat16")
    asked.from_bytes(full.to_bytes())
    with caplog.at_level(logging.WARNING, logger="fillm_spacy"):
        out = asked.predict(docs)
        asked.predict(docs)
    np.testing.assert_array_equal(np.concatenate(out), np.concatenate(full.predict(docs)))
    lines = [r.getMessage() for r in caplog.records if "bfloat16" in r.getMessage()]
    assert len(lines) == 1 and "float32" in lines[0]


def test_an_unknown_precision_is_a_clear_error(tiny_gemma3_dir):
    with pytest.raises(ValueError, match="precision must be one of"):
        encoder(tiny_gemma3_dir, precision="int4")


def test_training_runs_in_float32_whatever_the_precision(tiny_gemma3_dir, docs, monkeypatch):
    """The heads learn from float32 features; only inference uses the lower precision."""
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    torch.manual_seed(0)
    full = encoder(tiny_gemma3_dir, precision="float32")
    half = encoder(tiny_gemma3_dir, precision="bfloat16")
    half.from_bytes(full.to_bytes())
    train_a, _ = full.begin_update(docs[:3])
    train_b, _ = half.begin_update(docs[:3])
    np.testing.assert_array_equal(np.concatenate(train_a), np.concatenate(train_b))


def test_compiled_layers_give_the_eager_features_and_fall_back_with_one_log_line(
    tiny_gemma3_dir, docs, monkeypatch, caplog
):
    from fillm_spacy.layers import compiled as compiled_layers

    monkeypatch.setattr(compiled_layers, "_STATE", {"failed": False})
    torch.manual_seed(0)
    eager = encoder(tiny_gemma3_dir)
    fast = encoder(tiny_gemma3_dir, compiled=True)
    fast.from_bytes(eager.to_bytes())
    expected = np.concatenate(eager.predict(docs))
    np.testing.assert_allclose(np.concatenate(fast.predict(docs)), expected, atol=1e-4)
    layers = fast.shims[0]._model.llm.decoder.layers
    assert all("forward" not in layer.__dict__ for layer in layers)  # the shared base is left as it was
    assert not compiled_layers.compilation_failed()

    def broken(*args, **kwargs):
        raise RuntimeError("no C compiler\nsecond line")

    monkeypatch.setattr(compiled_layers.torch, "compile", lambda fn, **kwargs: broken)
    monkeypatch.setattr(compiled_layers, "_COMPILED", compiled_layers.weakref.WeakKeyDictionary())
    with caplog.at_level(logging.WARNING, logger="fillm_spacy"):
        np.testing.assert_allclose(np.concatenate(fast.predict(docs)), expected, atol=1e-4)
        fast.predict(docs)
    lines = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(lines) == 1 and "no C compiler" in lines[0] and "second line" not in lines[0]
    assert all("forward" not in layer.__dict__ for layer in layers)


def test_an_encoder_with_lora_never_runs_compiled(tiny_gemma3_dir):
    model = llm_encoder_v1(
        model_name=str(tiny_gemma3_dir),
        width=16,
        lora_r=4,
        first_layer=1,
        last_layer=3,
        window=32,
        stride=24,
        compiled=True,
    )
    assert model.shims[0]._model.compiled is False
