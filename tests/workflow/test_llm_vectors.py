"""LLM-derived static vectors (workflow/llm_vectors.py) on the tiny Gemma 3."""

import json
from collections import defaultdict

import numpy as np
import pytest
import spacy
import torch

from fillm_spacy.layers.encoder_batch import docs_to_batch
from fillm_spacy.layers.encoder_settings import LayerSettings
from fillm_spacy.layers.llm_encoder_module import LLMEncoderModule
from fillm_spacy.models.loading import load_base_llm
from fillm_spacy.workflow.llm_vectors import build_llm_vectors, main

from ..conftest import sample_texts


@pytest.fixture
def raw_text(tmp_path):
    path = tmp_path / "raw.txt"
    # mixed case: the two spellings of a word share one row
    texts = sample_texts()[:30] + ["Ang Maynila ay malaki.", "ang maynila ay maganda."]
    path.write_text("\n".join(texts) + "\n\n", encoding="utf8")
    return path


def test_each_row_is_the_average_of_the_words_states_one_doc_at_a_time(
    tiny_gemma3_dir, raw_text, tmp_path, one_torch_thread
):
    summary = build_llm_vectors(
        raw_text, tmp_path / "vectors", model_name=str(tiny_gemma3_dir), layers=[1, 3], min_count=2
    )
    # the same states computed independently: each line alone (no batching), summed per lowercased word
    llm = load_base_llm(str(tiny_gemma3_dir))
    module = LLMEncoderModule(llm, 1, LayerSettings((1, 3))).eval()
    to_batch = docs_to_batch(llm, 256, 192, causal=True, pooling="last")
    tokenizer = spacy.blank("tl").tokenizer
    states = defaultdict(list)
    for line in raw_text.read_text(encoding="utf8").splitlines():
        if not line.strip():
            continue
        doc = tokenizer(line.strip())
        with torch.no_grad():
            rows = module.token_states(*to_batch(None, [doc], False)[0].args).numpy()
        for token, row in zip(doc, rows):
            states[token.lower_].append(row)
    expected = {word: np.mean(rows, axis=0) for word, rows in states.items() if len(rows) >= 2}

    nlp = spacy.load(tmp_path / "vectors")
    vectors = nlp.vocab.vectors
    assert vectors.shape == (len(expected), llm.config.hidden_size) == (summary["types"], summary["width"])
    for word in ("maynila", "ay", "ang"):
        for spelling in (word, word.title()):  # one row, keyed by both spellings
            np.testing.assert_allclose(vectors[nlp.vocab.strings[spelling]], expected[word], rtol=1e-4, atol=1e-5)
    assert nlp.vocab.strings["MAYNILA"] not in vectors  # a spelling never seen and not title case
    assert "malaki" not in expected  # seen once: below min_count, no row
    assert nlp.vocab.strings["malaki"] not in vectors
    written = json.loads((tmp_path / "vectors" / "llm_vectors.json").read_text())
    assert written["types"] == len(expected) < written["keys"]  # title-case keys share rows


def test_a_pipeline_reads_one_row_for_both_spellings_and_zeros_for_unseen_words(
    tiny_gemma3_dir, raw_text, tmp_path, one_torch_thread
):
    from spacy.ml.staticvectors import StaticVectors

    build_llm_vectors(raw_text, tmp_path / "vectors", model_name=str(tiny_gemma3_dir), layers=[2], min_count=1)
    nlp = spacy.load(tmp_path / "vectors")
    model = StaticVectors(nO=4, dropout=None)
    docs = [nlp.make_doc("Maynila"), nlp.make_doc("maynila"), nlp.make_doc("zzzqqq")]
    model.initialize(X=docs)
    rows = model.predict(docs)
    upper, lower, unseen = rows.dataXd
    np.testing.assert_allclose(upper, lower)
    assert np.abs(lower).sum() > 0 and np.abs(unseen).sum() == 0


def test_pca_and_floret_set_the_width(tiny_gemma3_dir, raw_text, tmp_path, one_torch_thread):
    from fillm_spacy.workflow.vectors import train_floret_vectors

    floret_file = train_floret_vectors(
        raw_text, tmp_path / "f.floret", dim=8, bucket=500, epochs=1, threads=1, min_count=1
    )
    floret_dir = tmp_path / "floret"
    from spacy.training.initialize import convert_vectors  # what `spacy init vectors` runs

    floret_nlp = spacy.blank("tl")
    convert_vectors(floret_nlp, floret_file, truncate=0, prune=-1, mode="floret")
    floret_nlp.to_disk(floret_dir)
    summary = build_llm_vectors(
        raw_text, tmp_path / "both", model_name=str(tiny_gemma3_dir), layers=[3], dim=5, with_floret=floret_dir
    )
    nlp = spacy.load(tmp_path / "both")
    assert summary["width"] == nlp.vocab.vectors.shape[1] == 5 + 8
    row = nlp.vocab.vectors[nlp.vocab.strings["ang"]]
    np.testing.assert_allclose(row[5:], floret_nlp.vocab.get_vector("ang"), rtol=1e-5)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda raw, model: [str(raw), "out", "--model", model, "--layers", "7"], "layers must be in 0..3"),
        (lambda raw, model: [str(raw.parent / "missing.txt"), "out", "--model", model], "missing.txt"),
        (
            lambda raw, model: [str(raw), "out", "--model", model, "--layers", "1", "--min-count", "1000"],
            "No word occurs 1000 times",
        ),
    ],
)
def test_bad_arguments_end_in_one_line(tiny_gemma3_dir, raw_text, make_args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as raised:
        main(make_args(raw_text, str(tiny_gemma3_dir)))
    err = capsys.readouterr().err.strip()
    assert raised.value.code == 1 and err.startswith("Error: ") and message in err and "\n" not in err


def test_an_empty_file_is_refused(tiny_gemma3_dir, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf8")
    with pytest.raises(SystemExit) as raised:
        main([str(empty), str(tmp_path / "out"), "--model", str(tiny_gemma3_dir)])
    assert raised.value.code == 1 and "has no text" in capsys.readouterr().err
