"""Tagalog adaptation of the base LLM (fillm_spacy.adapt) and the encoder's language adapter."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
from typer.testing import CliRunner

from fillm_spacy.adapt.cli import app
from fillm_spacy.adapt.objectives import mask_positions
from fillm_spacy.adapt.probe import upos_probe
from fillm_spacy.adapt.text import pack_sequences, split_lines
from fillm_spacy.adapt.training import AdaptSettings, adapt
from fillm_spacy.layers.token_states import doc_token_states
from fillm_spacy.models.adapters import AdapterNotFound, adapter_state, load_language_adapter
from fillm_spacy.models.loading import load_base_llm

from ..conftest import TL_FILLM_CONFIG, sample_docs, sample_texts, save_tiny_tl_fillm

runner = CliRunner()
TINY = dict(last_layer=2, sequence_length=64, budget_pieces=12_000, learning_rate=3e-3)


@pytest.fixture(scope="module")
def raw_text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "raw.txt"
    path.write_text("\n".join(sample_texts() * 3) + "\n", encoding="utf8")
    return path


@pytest.fixture(scope="module")
def adapters(tiny_gemma3_dir, raw_text, tmp_path_factory, one_torch_thread):
    """A CLM and an MNTP adapter trained on the tiny Gemma 3, with their summaries."""
    root = tmp_path_factory.mktemp("adapters")
    out = {}
    for objective in ("clm", "mntp"):
        result = runner.invoke(
            app,
            [
                "train",
                str(raw_text),
                str(root / objective),
                "--model",
                str(tiny_gemma3_dir),
                "--objective",
                objective,
                "--last-layer",
                "2",
                "--heldout-lines",
                "20",
                "--budget-pieces",
                "12000",
                "--sequence-length",
                "64",
                "--learning-rate",
                "3e-3",
            ],
        )
        assert result.exit_code == 0, result.output
        out[objective] = (root / objective, json.loads(result.stdout.strip().splitlines()[-1]))
    return out


@pytest.mark.parametrize("objective", ["clm", "mntp"])
def test_adaptation_lowers_training_loss_and_heldout_perplexity(adapters, objective):
    directory, summary = adapters[objective]
    assert summary["last_loss"] < summary["first_loss"]
    assert summary["heldout_perplexity_after"] < summary["heldout_perplexity_before"]
    assert summary["attention"] == {"clm": "causal", "mntp": "bidirectional"}[objective]
    assert summary["pieces_seen"] >= 12_000
    meta = json.loads((directory / "fillm_adapter.json").read_text())
    assert meta["fingerprint"]["model_type"] == "gemma3_text"
    assert sorted(p.name for p in directory.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "fillm_adapter.json",
    ]


def test_a_trained_adapter_no_longer_trains(adapters, tiny_gemma3_dir):
    llm = load_base_llm(str(tiny_gemma3_dir))
    assert not [name for name, p in llm.model.named_parameters() if p.requires_grad and ".language-" in name]


def test_lora_only_on_the_layers_encoders_read(adapters):
    config = json.loads((adapters["clm"][0] / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == [0, 1]  # decoder layers 1..2 of 3


def test_saved_adapter_reloads_to_the_same_states(adapters, tiny_gemma3_dir, one_torch_thread):
    llm = load_base_llm(str(tiny_gemma3_dir))
    docs = sample_docs(6)
    first, _ = load_language_adapter(llm, adapters["clm"][0])
    second, _ = load_language_adapter(llm, adapters["clm"][0])
    plain = [s for _, s in doc_token_states(llm, docs, [1, 2])]
    with_first = [s for _, s in doc_token_states(llm, docs, [1, 2], adapter_name=first)]
    with_second = [s for _, s in doc_token_states(llm, docs, [1, 2], adapter_name=second)]
    for a, b, c in zip(plain, with_first, with_second):
        np.testing.assert_array_equal(b, c)
        assert not np.allclose(a[:, 1], b[:, 1], atol=1e-4)  # the adapter moves layer 2


def test_mntp_hides_at_least_one_piece_per_row_and_never_the_first():
    ids = torch.arange(40).reshape(4, 10)
    chosen = mask_positions(ids, 0.01, torch.Generator().manual_seed(0))
    assert chosen.any(dim=1).all() and not chosen[:, 0].any()


def test_packed_rows_start_with_bos(tiny_gemma3_dir):
    llm = load_base_llm(str(tiny_gemma3_dir))
    rows = pack_sequences(llm.tokenizer, sample_texts(), 32)
    assert rows.shape[1] == 32 and (rows[:, 0] == llm.tokenizer.bos_token_id).all()


@pytest.mark.parametrize(
    "content, heldout, message",
    [
        (None, 5, "does not exist"),
        (b"", 5, "leaves nothing to train on"),
        (b"isa\ndalawa\n", 5, "leaves nothing to train on"),
        (b"\xff\xfe bad bytes\n" * 10, 2, "not UTF-8"),
    ],
)
def test_bad_raw_text_is_one_clear_line(tmp_path, tiny_gemma3_dir, content, heldout, message):
    path = tmp_path / "raw.txt"
    if content is not None:
        path.write_bytes(content)
    result = runner.invoke(
        app,
        ["train", str(path), str(tmp_path / "out"), "--model", str(tiny_gemma3_dir), "--heldout-lines", str(heldout)],
    )
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bad_settings_are_clear(tiny_gemma3_dir, raw_text):
    llm = load_base_llm(str(tiny_gemma3_dir))
    text = split_lines(raw_text, 20)
    for bad, message in [
        ({"objective": "mlm"}, "objective"),
        ({"last_layer": 9}, "last_layer"),
        ({"mask_rate": 1.5}, "mask_rate"),
        ({"precision": "fp8"}, "precision"),
    ]:
        with pytest.raises(ValueError, match=message):
            adapt(llm, text, AdaptSettings(**{**TINY, **bad}))


def test_a_diverging_loss_stops_with_advice_and_leaves_nothing_behind(tiny_gemma3_dir, raw_text):
    llm = load_base_llm(str(tiny_gemma3_dir))

    def adapters():
        return set(llm.peft_model.peft_config) if llm.peft_model is not None else set()

    def training():  # other tests' encoders may share this model, their adapters training
        return {name for name, p in llm.model.named_parameters() if p.requires_grad}

    before, trained_before = adapters(), training()
    with pytest.raises(FloatingPointError, match="lower --learning-rate"):
        adapt(llm, split_lines(raw_text, 20), AdaptSettings(**{**TINY, "learning_rate": 1e30, "budget_pieces": 2000}))
    assert adapters() == before  # the failed adapter is off the shared model
    assert training() == trained_before  # and nothing of it trains


def test_corrupt_or_missing_adapter_is_one_clear_line(adapters, tiny_gemma3_dir, tmp_path):
    llm = load_base_llm(str(tiny_gemma3_dir))
    broken = tmp_path / "broken"
    shutil.copytree(adapters["clm"][0], broken)
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(AdapterNotFound, match="unreadable"):
        load_language_adapter(llm, broken)
    (broken / "adapter_config.json").unlink()
    with pytest.raises(AdapterNotFound, match="lacks adapter_config.json"):
        load_language_adapter(llm, broken)


def test_adapter_from_another_base_model_is_refused(adapters, tiny_gemma_dir):
    with pytest.raises(ValueError, match="trained on base model"):
        load_language_adapter(load_base_llm(str(tiny_gemma_dir)), adapters["clm"][0])


def test_probe_reads_pos_from_layer_states(tiny_gemma3_dir, one_torch_thread):
    llm = load_base_llm(str(tiny_gemma3_dir))
    docs = sample_docs(40)
    scores = upos_probe(llm, docs, docs, [0, 2], epochs=200)
    tags = [t.pos_ for d in docs for t in d if t.pos_]
    majority = 100.0 * max(tags.count(t) for t in set(tags)) / len(tags)
    assert set(scores) == {0, 2} and all(majority < s <= 100.0 for s in scores.values())


def test_probe_cli_with_an_adapter(adapters, tiny_gemma3_dir, tmp_path):
    from spacy.tokens import DocBin

    path = tmp_path / "gold.spacy"
    DocBin(docs=sample_docs(20)).to_disk(path)
    result = runner.invoke(
        app,
        [
            "probe",
            str(path),
            str(path),
            "--adapter",
            str(adapters["mntp"][0]),
            "--model",
            str(tiny_gemma3_dir),
            "--layers",
            "1,2",
            "--output",
            str(tmp_path / "probe.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "probe.json").read_text())
    assert written["attention"] == "bidirectional" and set(written["upos_accuracy"]) == {"1", "2"}


def pipeline_outputs(nlp, texts):
    docs = list(nlp.pipe(texts))
    return [(d.to_array(["TAG", "POS", "HEAD", "DEP", "LEMMA"]), d.tensor) for d in docs]


def encoder_module(nlp):
    from fillm_spacy.layers.llm_shim import LLMShim

    return next(
        shim._model for node in nlp.get_pipe("tok2vec").model.walk() for shim in node.shims if isinstance(shim, LLMShim)
    )


def test_pipeline_carries_its_language_adapter(adapters, tiny_gemma3_dir, tmp_path, one_torch_thread):
    """Trained with a language adapter, saved, loaded where the adapter directory is gone: the
    adapter's own weights run, and the annotations and tensors are the same."""
    from safetensors.torch import load_file

    adapter_dir = tmp_path / "adapter"
    shutil.copytree(adapters["clm"][0], adapter_dir)
    saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    path = save_tiny_tl_fillm(
        tiny_gemma3_dir,
        tmp_path / "pipeline",
        TL_FILLM_CONFIG,
        steps=3,
        **{"components.tok2vec.model.language_adapter": str(adapter_dir)},
    )
    texts = sample_texts()[:12]
    with_dir = pipeline_outputs(spacy.load(path), texts)
    shutil.rmtree(adapter_dir)
    nlp = spacy.load(path)
    without_dir = pipeline_outputs(nlp, texts)
    for (a_arr, a_tensor), (b_arr, b_tensor) in zip(with_dir, without_dir):
        np.testing.assert_array_equal(a_arr, b_arr)
        np.testing.assert_allclose(a_tensor, b_tensor, atol=1e-6)
    module = encoder_module(nlp)
    restored = adapter_state(module.llm, module.active_adapter_name)
    assert restored.keys() == saved.keys()
    assert all(torch.equal(restored[k], saved[k]) for k in saved)
    assert module.language_adapter.meta["objective"] == "clm"


def test_encoder_refuses_a_mismatched_language_adapter(adapters, tiny_gemma3_dir, tmp_path):
    with pytest.raises(ValueError, match='layers.attention = "bidirectional"'):
        save_tiny_tl_fillm(
            tiny_gemma3_dir,
            tmp_path / "p1",
            TL_FILLM_CONFIG,
            steps=0,
            **{"components.tok2vec.model.language_adapter": str(adapters["mntp"][0])},
        )
    with pytest.raises(ValueError, match="LoRA r = 0"):
        save_tiny_tl_fillm(
            tiny_gemma3_dir,
            tmp_path / "p2",
            TL_FILLM_CONFIG,
            steps=0,
            **{
                "components.tok2vec.model.language_adapter": str(adapters["clm"][0]),
                "components.tok2vec.model.lora.r": 4,
            },
        )
