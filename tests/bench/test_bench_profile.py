"""`python -m fillm_spacy.bench profile` on a tiny tl_fillm pipeline and on one without an LLM."""

import json
import subprocess
import sys

import numpy as np
import pytest
import spacy
import torch
from spacy.training import Example

from fillm_spacy import load
from fillm_spacy.bench.profile import LayerRecorder, measure_profile
from fillm_spacy.pipeline.quantize import llm_encoder_modules

from ..conftest import sample_texts, save_tiny_tl_fillm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MATMUL_SIZE = 256  # the peak measurement, small: the tests check the plumbing, not the machine


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_gemma3_dir, tmp_path_factory):
    return save_tiny_tl_fillm(tiny_gemma3_dir, tmp_path_factory.mktemp("profile") / "tl_fillm")


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile-texts") / "texts.txt"
    path.write_text("\n".join(sample_texts()[:10]) + "\n", encoding="utf8")
    return path


@pytest.fixture(scope="module")
def profile(tiny_pipeline, texts_file):
    return measure_profile(str(tiny_pipeline), str(texts_file), 10, matmul_size=MATMUL_SIZE)


def hand_flops(config: dict, length: int, n_layers: int) -> int:
    """The module doc's formula, written out projection by projection from config.json."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads, head_dim = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    q, k, v, o = (
        hidden * heads * head_dim,
        hidden * kv_heads * head_dim,
        hidden * kv_heads * head_dim,
        heads * head_dim * hidden,
    )
    gate, up, down = hidden * inter, hidden * inter, inter * hidden
    linear = 2 * (q + k + v + o + gate + up + down) * length
    attention = 2 * length * length * heads * head_dim + 2 * length * length * heads * head_dim  # QK^T, then AV
    return n_layers * (linear + attention)


def test_components_sum_to_total(profile, tiny_pipeline):
    names = spacy.load(tiny_pipeline).pipe_names
    assert set(names) <= set(profile["components"])
    parts = sum(entry["seconds"] for entry in profile["components"].values())
    assert parts == pytest.approx(profile["total_seconds"], rel=0.05, abs=0.005)
    assert sum(entry["share"] for entry in profile["components"].values()) == pytest.approx(1.0, abs=0.05)
    assert profile["words"] > 0 and profile["words_per_second"] > 0
    assert profile["precision"] == "float32"
    # The LLM layers run inside tok2vec, and take part of its time.
    tok2vec = profile["components"]["tok2vec"]
    assert 0 < tok2vec["llm_layers_seconds"] <= tok2vec["seconds"]


def test_llm_figures(profile):
    llm = profile["llm"]
    assert llm["layers_run"] == 3
    assert llm["pieces"] > 0 and llm["pieces_per_word"] > 0.5
    assert llm["padded_pieces"] >= llm["pieces"]
    assert llm["flops_with_padding"] >= llm["flops"] > 0
    assert llm["gflop_per_word"] == pytest.approx(llm["flops"] / profile["words"] / 1e9, rel=0.01, abs=1e-6)
    peak = profile["matmul_peak_gflop_per_second"]
    assert peak["float32"] > 0 and peak["bfloat16"] > 0
    assert 0 < llm["fraction_of_peak"] < 1.5
    assert llm["linear_parameters_per_layer"] == 2 * 32 * 16 + 2 * 32 * 16 + 2 * 16 * 32 + 3 * 32 * 64


def test_flop_count_matches_hand_computation(tiny_pipeline, tiny_gemma3_dir):
    config = json.loads((tiny_gemma3_dir / "config.json").read_text())
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]) == (32, 64, 3)
    nlp = load(str(tiny_pipeline))
    (module,) = list(llm_encoder_modules(nlp))
    recorder = LayerRecorder(module)
    windows = [np.arange(5, 15), np.arange(5, 12)]  # 10 and 7 pieces: one forward pass, padded to 10
    module.eval()
    with recorder.installed(), torch.inference_mode():
        recorder.recording = True
        module.encode_windows(windows, "cpu")
    assert recorder.pieces == 17 and recorder.padded_pieces == 20 and recorder.layers_run == {3}
    assert recorder.flops == hand_flops(config, 10, 3) + hand_flops(config, 7, 3)
    assert recorder.flops_with_padding == 2 * hand_flops(config, 10, 3)
    # 10 pieces by hand: 3 layers x (2 x 9,216 weights x 10 + 4 x 10 x 10 x 2 heads x 16)
    assert hand_flops(config, 10, 3) == 3 * (2 * 9216 * 10 + 4 * 100 * 32) == 591360
    assert "run_layers" not in vars(module)  # the wrapper is gone


def test_pipeline_without_llm(tmp_path, texts_file):
    nlp = spacy.blank("tl")
    tagger = nlp.add_pipe("tagger")
    doc = nlp.make_doc("Kumain ang bata")
    example = Example.from_dict(doc, {"tags": ["VERB", "DET", "NOUN"]})
    for label in ("VERB", "DET", "NOUN"):
        tagger.add_label(label)
    nlp.initialize(lambda: [example])
    nlp.to_disk(tmp_path / "blank")
    result = measure_profile(str(tmp_path / "blank"), str(texts_file), 10, matmul_size=MATMUL_SIZE)
    assert result["llm"] is None
    assert result["precision"] == "none"
    assert set(result["components"]) == {"make_doc", "tagger"}


def test_cli_prints_json(tiny_pipeline, texts_file):
    command = [
        sys.executable,
        "-m",
        "fillm_spacy.bench",
        "profile",
        "--pipeline",
        str(tiny_pipeline),
        "--texts",
        str(texts_file),
        "--lines",
        "5",
        "--matmul-size",
        str(MATMUL_SIZE),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    assert result["texts"] == 5
    assert result["llm"]["pieces"] > 0
    assert "tok2vec" in result["components"]
