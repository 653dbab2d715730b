"""fillm_spacy.bench.scale (the SeaLLM-size GPU benchmark) on its tiny preset, on the CPU."""

import pytest

from fillm_spacy.bench.scale import PRESETS, VocabClampedTokenizer, load_tokenizer, measure_scale

from ..conftest import sample_texts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(training: str, last_layer=None, steps: int = 1):
    return measure_scale(
        "tiny",
        sample_texts(),
        None,
        "cpu",
        "float32",
        training,
        last_layer,
        words_per_batch=40,
        steps=steps,
        inference=True,
    )


def test_seallm_preset_is_seallm_7b_v2_5_shape():
    shape = PRESETS["seallm-7b-v2.5"]
    assert (shape["hidden_size"], shape["num_hidden_layers"], shape["num_attention_heads"]) == (3072, 28, 16)
    assert (shape["head_dim"], shape["intermediate_size"], shape["vocab_size"]) == (256, 24576, 256000)


def test_lora_trains_a_fraction_of_what_full_fine_tuning_trains():
    lora, full = run("lora"), run("full")
    for result in (lora, full):
        assert result["train_words_per_second"] > 0 and result["inference_words_per_second"] > 0
        assert result["inference_words"] > 0
        assert result["of_layers"] == PRESETS["tiny"]["num_hidden_layers"] == 4
        assert result["layers_run"] == [1, 2, 3, 4]
    # full = every base weight + the heads; LoRA = adapters + the same heads
    assert full["trainable_parameters"] > full["model_parameters"]
    assert lora["trainable_parameters"] < full["trainable_parameters"]


def test_last_layer_bounds_the_layers_run():
    assert run("lora", last_layer=2)["layers_run"] == [1, 2]


def test_unknown_training_mode_is_refused():
    with pytest.raises(ValueError, match="'lora' or 'full'"):
        run("qlora")


def test_too_little_text_for_the_steps_is_a_clear_error():
    with pytest.raises(ValueError, match="batches of 40 words"):
        run("lora", steps=10_000)


def test_ids_past_the_model_vocabulary_become_unk():
    tokenizer = load_tokenizer(None, sample_texts())
    clamped = VocabClampedTokenizer(tokenizer, vocab_size=300)
    ids = clamped([sample_texts()[0]], add_special_tokens=False)["input_ids"][0]
    original = tokenizer([sample_texts()[0]], add_special_tokens=False)["input_ids"][0]
    assert len(ids) == len(original)
    assert all(i < 300 or i == tokenizer.unk_token_id for i in ids)
    assert [i for i in ids if i != tokenizer.unk_token_id] == [i for i in original if i < 300]
    assert clamped.bos_token_id == tokenizer.bos_token_id


def test_bench_train_times_spacy_updates_of_the_real_config(tiny_gemma3_dir, tmp_path):
    """`bench train` builds the optimizer as `spacy train` does (its schedule refers to
    training.max_steps) and reports seconds per 1,000 words."""
    from spacy.tokens import DocBin

    from fillm_spacy.bench.measure import measure_train

    from ..conftest import DATA, sample_docs

    DocBin(docs=sample_docs(20)).to_disk(tmp_path / "train.spacy")
    overrides = {
        "components.tok2vec.model.model_name": str(tiny_gemma3_dir),
        "components.tok2vec.model.layers.last": 3,
        "components.tok2vec.model.features.embed.include_static_vectors": False,  # no vectors here
        "paths.ner_train": str(DATA / "wikiann-sample.spacy"),
        "paths.ner_dev": str(DATA / "wikiann-sample.spacy"),
    }
    train = str(tmp_path / "train.spacy")
    config = str(DATA.parent.parent / "configs" / "tl_fillm_sm.cfg")
    result = measure_train(config, train, train, steps=2, overrides=overrides)
    assert result["steps"] == 2 and result["words"] > 0
    assert result["seconds_per_1000_words"] > 0 and result["peak_rss_mb"] > 0


def test_depth_plot_writes_a_png_and_refuses_incomplete_runs(tmp_path):
    from fillm_spacy.bench.depth_plot import plot_depth_curve

    runs = [
        {"name": "L1 LoRA", "words_per_second": 1300, "pos_acc": 92.5, "dep_las": 66.8},
        {"name": "L12 frozen", "words_per_second": 250, "pos_acc": 93.0, "dep_las": 69.0},
        {"name": "baseline", "words_per_second": 850, "pos_acc": 92.2, "dep_las": 68.8, "baseline": True},
    ]
    path = plot_depth_curve(runs, tmp_path / "plots" / "depth.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(ValueError, match="L1 LoRA"):
        plot_depth_curve([{"name": "L1 LoRA", "words_per_second": 1300}], tmp_path / "x.png")
