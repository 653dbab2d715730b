import subprocess
import sys

import numpy as np
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam

from fillm_spacy.layers.bilstm import PackedBiLSTM
from fillm_spacy.layers.llm_encoder import llm_encoder_v1
from fillm_spacy.models.adapters import active_adapter

from ..conftest import sample_docs, sample_texts

WIDTH = 16


def make_encoder(model_dir, **overrides):
    args = dict(model_name=str(model_dir), width=WIDTH, lora_r=4, first_layer=1, last_layer=3, window=32, stride=24)
    args.update(overrides)
    model = llm_encoder_v1(**args)
    model.initialize()
    return model


def encoder_module(model):
    return model.shims[0]._model


@pytest.fixture
def nlp():
    return spacy.blank("tl")


def test_one_vector_per_token_for_awkward_input(tiny_model_dir, nlp):
    model = make_encoder(tiny_model_dir)
    texts = [
        "Ibang tao ang kumain ng mangga.",
        "",
        "   ",
        "😀🇵🇭 !!",
        "Mahal\u200bkita\tnang  lubos\n\n",
        "Hello, this is English text.",
    ]
    docs = [nlp(t) for t in texts]
    outputs = model.predict(docs)
    assert [o.shape for o in outputs] == [(len(d), WIDTH) for d in docs]
    assert all(np.isfinite(o).all() for o in outputs)


def test_long_document_runs_in_windows_and_keeps_the_first_window_exact(tiny_gemma3_dir, nlp):
    words = " ".join(doc.text for doc in sample_docs()).split()
    text = " ".join((words * 5)[:5000])
    doc = nlp(text)
    assert len(doc) >= 5000
    windowed = make_encoder(tiny_gemma3_dir, window=128, stride=96, lora_r=0, contextualizer_width=0)
    one_window = make_encoder(tiny_gemma3_dir, window=511, stride=511, lora_r=0, contextualizer_width=0)
    # same head weights, so only windowing differs
    encoder_module(one_window).load_state_dict(encoder_module(windowed).state_dict())
    long_out = windowed.predict([doc])[0]
    assert long_out.shape == (len(doc), WIDTH) and np.isfinite(long_out).all()
    # A causal model's first window is what a single long window computes for those pieces.
    short_doc = doc[:40].as_doc()
    np.testing.assert_allclose(
        one_window.predict([short_doc])[0][:30], windowed.predict([short_doc])[0][:30], rtol=1e-4, atol=1e-5
    )


def test_gradients_reach_lora_and_not_base_weights(tiny_model_dir, nlp):
    model = make_encoder(tiny_model_dir)
    module = encoder_module(model)
    # other encoders' adapters on the shared model (earlier tests made and trained some) train in
    # their own updates: this update must leave their gradients as they were
    others = {n: p for n, p in module.named_parameters() if "lora_" in n and f".{module.adapter_name}." not in n}
    others_before = {n: None if p.grad is None else p.grad.clone() for n, p in others.items()}
    docs = [nlp("Kumain ng mangga ang bata."), nlp("Umuulan kahapon sa Maynila.")]
    outputs, backprop = model.begin_update(docs)
    backprop([np.ones_like(o) for o in outputs])
    lora = {n: p for n, p in module.named_parameters() if f".{module.adapter_name}." in n}
    base = {n: p for n, p in module.named_parameters() if n.startswith("base.") and "lora_" not in n}
    assert lora and all(p.requires_grad for p in lora.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora.values())
    assert base and all(p.grad is None and not p.requires_grad for p in base.values())
    for name, param in others.items():
        before = others_before[name]
        assert (param.grad is None) if before is None else torch.equal(param.grad, before), name
    assert module.projection.weight.grad is not None


def test_training_moves_lora_weights_but_not_base(tiny_gemma_dir, nlp):
    model = make_encoder(tiny_gemma_dir)
    module = encoder_module(model)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    optimizer = Adam(0.01)
    docs = [nlp("Kumain ng mangga ang bata.")]
    for _ in range(2):
        outputs, backprop = model.begin_update(docs)
        backprop([np.ones_like(o) for o in outputs])
        model.finish_update(optimizer)
    changed = {n for n, p in module.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any(f".{module.adapter_name}." in n for n in changed)
    assert not any(n.startswith("base.") and f".{module.adapter_name}." not in n for n in changed)


def test_frozen_encoder_trains_only_its_own_head(tiny_gemma3_dir, nlp):
    model = make_encoder(tiny_gemma3_dir, lora_r=0)
    module = encoder_module(model)
    assert module.adapter_name is None
    assert not [n for n, _ in module.trainable_named_parameters() if n.startswith("base.")]
    base = {n: p for n, p in module.named_parameters() if n.startswith("base.")}
    grads_before = {n: None if p.grad is None else p.grad.clone() for n, p in base.items()}
    outputs, backprop = model.begin_update([nlp("Kumain ng mangga ang bata.")])
    backprop([np.ones_like(o) for o in outputs])
    for name, param in base.items():  # the shared base (and other encoders' adapters) got nothing
        before = grads_before[name]
        assert (param.grad is None) if before is None else torch.equal(param.grad, before), name
    assert module.projection.weight.grad is not None


def test_bidirectional_attention_lets_a_token_see_its_right_context(tiny_gemma3_dir, nlp):
    causal = make_encoder(tiny_gemma3_dir, attention="causal", contextualizer_width=0)
    both = make_encoder(tiny_gemma3_dir, attention="bidirectional", contextualizer_width=0)
    a, b = nlp("Kumain ang bata ng mangga"), nlp("Kumain ang bata ng saging")
    # the first token cannot see the last word in causal mode, it can in bidirectional mode
    np.testing.assert_allclose(causal.predict([a])[0][0], causal.predict([b])[0][0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(both.predict([a])[0][0], both.predict([b])[0][0], atol=1e-6)


@pytest.mark.parametrize("pooling", ["first", "mean", "last"])
def test_pooling_options(tiny_gemma3_dir, nlp, pooling):
    model = make_encoder(tiny_gemma3_dir, pooling=pooling, contextualizer_width=0)
    doc = nlp("magkakatrabaho sila")
    assert model.predict([doc])[0].shape == (2, WIDTH)


def test_bad_arguments_are_clear(tiny_gemma3_dir):
    with pytest.raises(ValueError, match=r"layers' `last` to at most 3"):
        make_encoder(tiny_gemma3_dir, last_layer=99)
    with pytest.raises(ValueError, match="pooling"):
        make_encoder(tiny_gemma3_dir, pooling="max")
    with pytest.raises(ValueError, match="attention"):
        make_encoder(tiny_gemma3_dir, attention="sideways")
    with pytest.raises(ValueError, match="depth >= 1"):
        make_encoder(tiny_gemma3_dir, contextualizer_width=16, contextualizer_depth=0)
    with pytest.raises(ValueError, match="dropout < 1"):
        make_encoder(tiny_gemma3_dir, contextualizer_width=16, contextualizer_depth=2, contextualizer_dropout=1.0)


def test_stacked_bilstm_contextualizer_sees_right_context(tiny_gemma3_dir, nlp):
    model = make_encoder(tiny_gemma3_dir, contextualizer_width=16, contextualizer_depth=2, contextualizer_dropout=0.33)
    lstm = encoder_module(model).contextualizer.lstm
    assert lstm.num_layers == 2 and lstm.bidirectional and lstm.dropout == pytest.approx(0.33)
    a, b = nlp("Kumain ang bata ng mangga"), nlp("Kumain ang bata ng saging")
    out_a, out_b = model.predict([a])[0], model.predict([b])[0]
    assert out_a.shape == (5, WIDTH)
    # causal attention alone hides the last word from the first token; the BiLSTM does not
    assert not np.allclose(out_a[0], out_b[0], atol=1e-6)


TAGGER_CONFIG = """
[nlp]
lang = "tl"
pipeline = ["tok2vec", "tagger", "morphologizer"]

[components]

[components.tok2vec]
factory = "tok2vec"

[components.tok2vec.model]
@architectures = "fillm.LLMEncoder.v2"
model_name = "{model_dir}"
width = 32

[components.tok2vec.model.layers]
@misc = "fillm.EncoderLayers.v1"
first = 1
last = 3

[components.tok2vec.model.lora]
@misc = "fillm.EncoderLora.v1"
r = 4

[components.tok2vec.model.contextualizer]
@misc = "fillm.EncoderContextualizer.v1"
width = 32

[components.tok2vec.model.batching]
@misc = "fillm.EncoderBatching.v1"
window = 64
stride = 48

[components.tok2vec.model.features]
@architectures = "spacy.Tok2Vec.v2"

[components.tok2vec.model.features.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 32
attrs = ["NORM","PREFIX","SUFFIX","SHAPE"]
rows = [500,100,250,250]
include_static_vectors = false

[components.tok2vec.model.features.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = 32
depth = 1
window_size = 1
maxout_pieces = 2

[components.tagger]
factory = "tagger"

[components.tagger.model]
@architectures = "spacy.Tagger.v2"

[components.tagger.model.tok2vec]
@architectures = "spacy.Tok2VecListener.v1"
width = 32
upstream = "tok2vec"

[components.morphologizer]
factory = "morphologizer"

[components.morphologizer.model]
@architectures = "spacy.Tagger.v2"

[components.morphologizer.model.tok2vec]
@architectures = "spacy.Tok2VecListener.v1"
width = 32
upstream = "tok2vec"
"""


FLAT_V1_ENCODER = {
    "@architectures": "fillm.LLMEncoder.v1",
    "width": 32,
    "lora_r": 4,
    "first_layer": 1,
    "last_layer": 3,
    "contextualizer_width": 32,
    "window": 64,
    "stride": 48,
}


def tagger_pipeline(model_dir):
    config = spacy.util.load_config_from_str(TAGGER_CONFIG.replace("{model_dir}", str(model_dir)))
    return spacy.util.load_model_from_config(config, auto_fill=True, validate=True)


@pytest.fixture(scope="module")
def trained_tagger(tiny_gemma3_dir):
    spacy.util.fix_random_seed(0)
    nlp = tagger_pipeline(tiny_gemma3_dir)
    docs = sample_docs(30)
    examples = [Example(nlp.make_doc(d.text), d) for d in docs]
    optimizer = nlp.initialize(lambda: examples)
    start = nlp.evaluate(examples)
    for _ in range(12):
        for batch in spacy.util.minibatch(examples, 10):
            nlp.update(batch, sgd=optimizer, drop=0.1)
    return nlp, examples, start, nlp.evaluate(examples)


def test_listeners_train_through_the_encoder_and_accuracy_improves(trained_tagger):
    nlp, _examples, start, end = trained_tagger
    assert nlp.get_pipe("tok2vec").listener_map.keys() == {"tagger", "morphologizer"}
    assert end["pos_acc"] > start["pos_acc"] + 0.2
    assert end["tag_acc"] > start["tag_acc"] + 0.2


def test_save_and_load_round_trip_is_identical(trained_tagger, tmp_path):
    nlp, examples, _, _ = trained_tagger
    texts = [eg.reference.text for eg in examples[:5]] + ["", "😀"]
    before = list(nlp.pipe(texts))
    nlp.to_disk(tmp_path / "pipeline")
    reloaded = spacy.load(tmp_path / "pipeline")
    after = list(reloaded.pipe(texts))
    for b, a in zip(before, after):
        assert [t.pos_ for t in b] == [t.pos_ for t in a]
        assert [t.tag_ for t in b] == [t.tag_ for t in a]
        assert [str(t.morph) for t in b] == [str(t.morph) for t in a]
    # vectors, not just argmaxes
    t2v_before = nlp.get_pipe("tok2vec").model.predict([nlp.make_doc(texts[0])])[0]
    t2v_after = reloaded.get_pipe("tok2vec").model.predict([reloaded.make_doc(texts[0])])[0]
    np.testing.assert_allclose(t2v_before, t2v_after, rtol=1e-5, atol=1e-6)
    # the base model is referred to, never stored
    saved = sum(p.stat().st_size for p in (tmp_path / "pipeline").rglob("*") if p.is_file())
    assert saved < 5_000_000


def test_a_pipeline_saved_with_the_flat_v1_settings_loads_as_trained(trained_tagger, tmp_path):
    """Pipelines saved before the config blocks (fillm.LLMEncoder.v1, flat settings) build the
    same model: their weights load and they annotate as before."""
    nlp, examples, _, _ = trained_tagger
    nlp.to_disk(tmp_path / "pipeline")
    config = spacy.util.load_config(tmp_path / "pipeline" / "config.cfg", interpolate=False)
    encoder = config["components"]["tok2vec"]["model"]
    flat = {**FLAT_V1_ENCODER, "model_name": encoder["model_name"], "features": encoder["features"]}
    config["components"]["tok2vec"]["model"] = flat
    config.to_disk(tmp_path / "pipeline" / "config.cfg")
    reloaded = spacy.load(tmp_path / "pipeline")
    assert reloaded.config["components"]["tok2vec"]["model"]["@architectures"] == "fillm.LLMEncoder.v1"
    texts = [eg.reference.text for eg in examples[:5]]
    for b, a in zip(nlp.pipe(texts), reloaded.pipe(texts)):
        assert [t.pos_ for t in b] == [t.pos_ for t in a]
        np.testing.assert_allclose(b.tensor, a.tensor, rtol=1e-5, atol=1e-6)


def test_config_blocks_check_their_values_in_one_line(tiny_gemma3_dir):
    config = spacy.util.load_config_from_str(TAGGER_CONFIG.replace("{model_dir}", str(tiny_gemma3_dir)))
    config["components"]["tok2vec"]["model"]["layers"]["stride"] = 2  # 1..3 in steps of 2 is fine
    config["components"]["tok2vec"]["model"]["batching"]["stride"] = 99  # longer than the window
    with pytest.raises(ValueError, match=r"Need 0 < stride <= window, got stride=99, window=64"):
        spacy.util.load_model_from_config(config, auto_fill=True, validate=True)


def test_corrupt_adapter_file_is_a_clear_error(trained_tagger, tmp_path):
    nlp, _, _, _ = trained_tagger
    nlp.to_disk(tmp_path / "pipeline")
    model_file = tmp_path / "pipeline" / "tok2vec" / "model"
    data = bytearray(model_file.read_bytes())
    model_file.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(Exception, match="(?i)corrupt|truncat|unpack|msgpack|outside"):
        spacy.load(tmp_path / "pipeline")


def test_adapter_from_another_base_model_is_refused(trained_tagger, tiny_gemma_dir, tmp_path):
    nlp, _, _, _ = trained_tagger
    nlp.to_disk(tmp_path / "pipeline")
    with pytest.raises(ValueError, match="trained on base model"):
        spacy.load(
            tmp_path / "pipeline", config={"components": {"tok2vec": {"model": {"model_name": str(tiny_gemma_dir)}}}}
        )


def test_architecture_and_its_blocks_are_registered_through_entry_points():
    code = (
        "import spacy; r = spacy.registry; "
        "print(r.architectures.get('fillm.LLMEncoder.v2').__module__, r.architectures.get('fillm.LLMEncoder.v1').__module__, "
        "*[r.misc.get(f'fillm.Encoder{b}.v1').__module__ for b in ('Layers', 'Lora', 'Contextualizer', 'Batching', 'Compute')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["fillm_spacy.layers.llm_encoder"] * 2
    assert out[2:] == ["fillm_spacy.layers.encoder_settings"] * 5


# --- what the encoder reads from the LLM -------------------------------------------------------


@pytest.mark.parametrize("layer", [1, 2])
def test_layer_feature_is_that_layers_own_output(tiny_model_dir, nlp, layer):
    """The feature of layer k is hidden_states[k] of a full forward pass (for k < n Hugging Face
    returns the layers' raw outputs); running only k layers must not put the final norm on it."""
    module = encoder_module(make_encoder(tiny_model_dir, lora_r=0, first_layer=layer, last_layer=layer))
    ids = torch.as_tensor([module.llm.tokenizer("Kumain ng mangga ang bata sa Maynila.")["input_ids"]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        full = module.llm.decoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        feature = module.run_layers(0, layer, mask, input_ids=ids)[layer]
    np.testing.assert_allclose(feature.numpy(), full[layer].numpy(), rtol=1e-5, atol=1e-6)
    normed = module.llm.decoder.norm(full[layer])
    assert not torch.allclose(feature, normed, atol=1e-3)  # what a truncated HF forward returned


def test_last_layer_feature_is_the_raw_output_of_the_last_layer(tiny_gemma3_dir):
    """For the model's last layer HF's hidden_states[n] is normed; the encoder's is the layer's output."""
    module = encoder_module(make_encoder(tiny_gemma3_dir, lora_r=0, first_layer=3, last_layer=3))
    captured = []
    hook = module.llm.decoder.layers[2].register_forward_hook(lambda _m, _i, out: captured.append(out[0]))
    ids = torch.as_tensor([module.llm.tokenizer("Umuulan kahapon sa Maynila.")["input_ids"]])
    try:
        with torch.no_grad():
            feature = module.run_layers(0, 3, torch.ones_like(ids), input_ids=ids)[3]
    finally:
        hook.remove()
    np.testing.assert_allclose(feature.numpy(), captured[0].numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("prefix_cache_mb", [0, 16])
def test_final_norm_puts_the_models_norm_on_the_last_mixed_layer_only(tiny_gemma3_dir, nlp, prefix_cache_mb):
    model = make_encoder(
        tiny_gemma3_dir, lora_r=0, first_layer=1, last_layer=2, final_norm=True, prefix_cache_mb=prefix_cache_mb
    )
    module = encoder_module(model)
    mixed = []
    hook = module.mix.register_forward_pre_hook(lambda _m, args: mixed.append([t.detach().clone() for t in args[0]]))
    doc = nlp("Kumain ng mangga ang bata sa Maynila.")
    try:
        for _ in range(2):  # with the cache, the second pass reads the stored (raw) states
            model.begin_update([doc])
    finally:
        hook.remove()
    ids = torch.as_tensor(
        [[module.llm.tokenizer.bos_token_id] + module.llm.tokenizer(doc.text, add_special_tokens=False)["input_ids"]]
    )
    with torch.no_grad(), active_adapter(module.llm, None):  # other tests' adapters are on the shared model
        full = module.llm.decoder(
            input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True
        ).hidden_states
        normed = module.llm.decoder.norm(full[2])
    assert len(mixed) == 2  # one mix per pass
    for layer1, layer2 in mixed:
        torch.testing.assert_close(layer1, full[1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer2, normed, rtol=1e-5, atol=1e-6)


def test_layer_stride_picks_the_mixed_layers(tiny_gemma3_dir):
    assert encoder_module(make_encoder(tiny_gemma3_dir, first_layer=1, last_layer=3, layer_stride=2)).mixed_layers == [
        1,
        3,
    ]
    assert encoder_module(make_encoder(tiny_gemma3_dir, first_layer=0, last_layer=2, layer_stride=2)).mixed_layers == [
        0,
        2,
    ]
    assert encoder_module(make_encoder(tiny_gemma3_dir, first_layer=2, last_layer=3)).mixed_layers == [2, 3]
    with pytest.raises(ValueError, match="stride >= 1"):
        make_encoder(tiny_gemma3_dir, layer_stride=0)
    with pytest.raises(ValueError, match="stride=2 for layers 0..3"):  # 3 would not be mixed
        make_encoder(tiny_gemma3_dir, first_layer=0, last_layer=3, layer_stride=2)
    with pytest.raises(ValueError, match="LoRA top_layers <= the last layer"):
        make_encoder(tiny_gemma3_dir, last_layer=2, lora_top_layers=3)


def lora_layer_indices(module) -> set:
    names = [n for n, _ in module.llm.model.named_parameters() if f".{module.adapter_name}." in n]
    return {int(n.split(".layers.")[1].split(".")[0]) for n in names}


def test_lora_goes_only_on_layers_that_run(tiny_gemma3_dir):
    assert lora_layer_indices(encoder_module(make_encoder(tiny_gemma3_dir, last_layer=2))) == {0, 1}
    assert lora_layer_indices(encoder_module(make_encoder(tiny_gemma3_dir, last_layer=3, lora_top_layers=1))) == {2}


# --- windows -------------------------------------------------------------------------------------


def test_window_stitching_keeps_each_piece_from_its_own_windows_direct_run(tiny_gemma3_dir, nlp):
    """Each piece's state is that of a direct run of the one window that owns it (for a causal
    model: the window where it has the most left context)."""
    from fillm_spacy.layers.alignment import assign_pieces_to_windows, window_starts

    window, stride = 24, 16
    model = make_encoder(tiny_gemma3_dir, lora_r=0, window=window, stride=stride, contextualizer_width=0)
    module = encoder_module(model)
    doc = nlp(" ".join(doc.text for doc in sample_docs(6)))
    batch = model.attrs["convert_inputs"](model, [doc], False)[0].args[0]
    assert len(batch.windows) >= 4  # several windows, several stitches
    with torch.no_grad():
        module.eval()
        stitched = module.encode_windows(batch.windows, "cpu")[batch.kept_rows]
        ids = module.llm.tokenizer(doc.text, add_special_tokens=False)["input_ids"]
        starts = window_starts(len(ids), window, stride)
        owner = assign_pieces_to_windows(len(ids), starts, window, causal=True)
        bos = [module.llm.tokenizer.bos_token_id]
        for k, start in enumerate(starts):
            direct = module.encode_windows([np.asarray(bos + ids[start : start + window])], "cpu")
            owned = np.flatnonzero(owner == k)
            assert len(owned) > 0
            np.testing.assert_allclose(stitched[owned].numpy(), direct[owned - start + 1].numpy(), rtol=1e-4, atol=1e-5)


# --- attention masks -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gemma", "gemma3"])
def test_bidirectional_mask_sees_right_context_and_never_padding(tiny_gemma_dir, tiny_gemma3_dir, nlp, kind):
    """Gemma 1 (SeaLLM) takes one 4-D mask, Gemma 3 one per attention type: both must let a piece
    see the pieces after it in its own window, and never the padding of a shorter window."""
    model_dir = tiny_gemma_dir if kind == "gemma" else tiny_gemma3_dir
    model = make_encoder(model_dir, attention="bidirectional", contextualizer_width=0)
    a, b = nlp("Kumain ang bata ng mangga"), nlp("Kumain ang bata ng saging")
    assert not np.allclose(model.predict([a])[0][0], model.predict([b])[0][0], atol=1e-6)
    longer = nlp("Nagpulong ang mga senador sa Maynila noong Lunes para sa badyet ng bansa.")
    alone = model.predict([a])[0]
    padded = model.predict([a, longer])[0]  # a is right-padded to the longer window in one forward pass
    np.testing.assert_allclose(alone, padded, rtol=1e-4, atol=1e-5)


# --- the frozen-prefix cache ---------------------------------------------------------------------


def layer_calls(module):
    """Indices of the decoder layers that run while the hooks are on, and the hooks."""
    calls = []
    hooks = [
        layer.register_forward_hook(lambda *_, i=i: calls.append(i))
        for i, layer in enumerate(module.llm.decoder.layers)
    ]
    return calls, hooks


@pytest.mark.parametrize("kind", ["gemma", "gemma3"])
def test_prefix_cache_gives_the_same_outputs_and_gradients(tiny_gemma_dir, tiny_gemma3_dir, nlp, kind):
    model_dir = tiny_gemma_dir if kind == "gemma" else tiny_gemma3_dir
    settings = dict(lora_dropout=0.0, first_layer=1, last_layer=3, lora_top_layers=1, contextualizer_width=16)
    cached = make_encoder(model_dir, prefix_cache_mb=16, **settings)
    plain = make_encoder(model_dir, prefix_cache_mb=0, **settings)
    cached_module, plain_module = encoder_module(cached), encoder_module(plain)
    assert cached_module.frozen_prefix == 2
    plain_module.load_state_dict(cached_module.own_state(), strict=False)  # same heads
    with torch.no_grad():  # same LoRA weights, made non-zero so that the top layer matters
        plain_params = dict(plain_module.llm.model.named_parameters())
        for name, param in cached_module.llm.model.named_parameters():
            if f".{cached_module.adapter_name}." in name:
                param.normal_(0, 0.1)
                plain_params[name.replace(cached_module.adapter_name, plain_module.adapter_name)].copy_(param)
    docs = [nlp(text) for text in sample_texts()[:6]]
    for epoch in range(2):  # the second epoch reads the prefix from the cache
        outputs, grads, calls = {}, {}, {}
        for name, model in (("cached", cached), ("plain", plain)):
            calls[name], hooks = layer_calls(cached_module)  # the base model (and its layers) is shared
            out, backprop = model.begin_update(docs)
            for hook in hooks:
                hook.remove()
            backprop([np.ones_like(o) for o in out])
            module = encoder_module(model)
            outputs[name] = out
            grads[name] = {
                n.replace(module.adapter_name, "adapter"): p.grad.clone()
                for n, p in module.trainable_named_parameters()
                if p.grad is not None
            }
            for _, p in module.trainable_named_parameters():
                p.grad = None
        for a, b in zip(outputs["cached"], outputs["plain"]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        assert grads["cached"].keys() == grads["plain"].keys()
        assert any(".adapter." in n for n in grads["cached"]) and any("mix." in n for n in grads["cached"])
        for n in grads["cached"]:
            torch.testing.assert_close(grads["cached"][n], grads["plain"][n], rtol=1e-4, atol=1e-5)
        assert set(calls["plain"]) == {0, 1, 2}
        # first epoch: all three layers; then only the LoRA layer, the frozen two come from the cache
        assert set(calls["cached"]) == ({0, 1, 2} if epoch == 0 else {2})
    assert 0 < cached_module.prefix_cache.n_bytes <= 16 * 2**20


@pytest.mark.parametrize("kind", ["gemma", "gemma3"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_layers_above_a_cached_state_give_exactly_the_full_runs_states(
    tiny_gemma_dir, tiny_gemma3_dir, nlp, kind, dtype
):
    """What the cache relies on: running layers 3.. from the stored output of layer 2 gives the
    same bits as one run from the piece ids, also in bf16 (Gemma 1 scales its inputs_embeds
    by sqrt(hidden): the stored state must not go through that)."""
    from fillm_spacy.layers.encoder_batch import docs_to_batch

    model_dir = tiny_gemma_dir if kind == "gemma" else tiny_gemma3_dir
    module = encoder_module(make_encoder(model_dir, dtype=dtype, lora_top_layers=1, contextualizer_width=0))
    docs = [nlp(text) for text in sample_texts()[:6]]
    batch = docs_to_batch(module.llm, 32, 24, causal=True, pooling="last")(None, docs, True)[0].args[0]
    input_ids, mask = module.pad(batch.windows, "cpu")
    with torch.no_grad():
        full = module.run_layers(0, 3, mask, input_ids=input_ids)
        prefix = module.run_layers(0, 2, mask, input_ids=input_ids)
        above = module.run_layers(2, 3, mask, hidden=prefix[2])
    assert full[3].dtype == getattr(torch, dtype)
    assert [torch.equal(full[k], prefix[k]) for k in (0, 1, 2)] == [True] * 3
    assert torch.equal(above[2], prefix[2]) and torch.equal(above[3], full[3])


def test_frozen_encoder_with_a_cache_runs_no_layer_after_the_first_epoch(tiny_gemma3_dir, nlp):
    model = make_encoder(tiny_gemma3_dir, lora_r=0, prefix_cache_mb=16, contextualizer_width=0)
    module = encoder_module(model)
    docs = [nlp(text) for text in sample_texts()[:4]]
    first, _ = model.begin_update(docs)
    calls, hooks = layer_calls(module)
    second, _ = model.begin_update(docs)
    for hook in hooks:
        hook.remove()
    assert calls == []
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # inference never caches (a corpus would fill memory)
    size = module.prefix_cache.n_bytes
    model.predict([nlp("Ibang dokumento ito.")])
    assert module.prefix_cache.n_bytes == size


def test_prefix_cache_stays_within_its_bound(tiny_gemma3_dir, nlp):
    model = make_encoder(tiny_gemma3_dir, lora_r=0, prefix_cache_mb=1, contextualizer_width=0)
    module = encoder_module(model)
    module.prefix_cache.max_bytes = 20_000  # a few windows' worth of a 32-wide tiny model
    docs = [nlp(text) for text in sample_texts()[:30]]
    model.begin_update(docs)
    assert 0 < module.prefix_cache.n_bytes <= 20_000
    assert len(module.prefix_cache.entries) < 30


def tiny_char_features():
    """spaCy's Tok2Vec of hash embeddings, 8 wide: the character features of the configs, tiny."""
    return spacy.registry.architectures.get("spacy.Tok2Vec.v2")(
        spacy.registry.architectures.get("spacy.MultiHashEmbed.v2")(
            width=8, attrs=["NORM", "SUFFIX"], rows=[100, 50], include_static_vectors=False
        ),
        spacy.registry.architectures.get("spacy.MaxoutWindowEncoder.v2")(
            width=8, depth=1, window_size=1, maxout_pieces=2
        ),
    )


def bilstm_reading_features(model_dir, **contextualizer):
    """A frozen encoder of layers 1-2 whose BiLSTM (width 16) reads the LLM states and tiny
    character features (`contextualizer`: more of its block's settings)."""
    from fillm_spacy.layers.encoder_settings import (
        encoder_batching_v1,
        encoder_contextualizer_v1,
        encoder_layers_v1,
        encoder_lora_v1,
    )
    from fillm_spacy.layers.llm_encoder import llm_encoder_v2

    return llm_encoder_v2(
        model_name=str(model_dir),
        width=WIDTH,
        layers=encoder_layers_v1(first=1, last=2),
        lora=encoder_lora_v1(r=0),
        contextualizer=encoder_contextualizer_v1(width=16, reads_features=True, **contextualizer),
        batching=encoder_batching_v1(window=32, stride=24),
        features=tiny_char_features(),
    )


def test_features_can_feed_the_bilstm(tiny_gemma3_dir, nlp):
    """contextualizer.reads_features: the BiLSTM reads LLM states and character features, so a
    feature of the last word reaches the first token (causal attention alone cannot do that)."""
    model = bilstm_reading_features(tiny_gemma3_dir, depth=2)
    docs = [nlp("Kumain ang bata ng mangga"), nlp("Kumain ang bata ng saging")]
    model.initialize(X=docs)
    assert encoder_module(next(n for n in model.walk() if n.name == "llm_encoder")).contextualizer is None
    lstms = [shim._model.lstm for node in model.walk() for shim in node.shims if isinstance(shim._model, PackedBiLSTM)]
    assert len(lstms) == 1 and lstms[0].num_layers == 2 and lstms[0].bidirectional
    assert lstms[0].input_size == WIDTH + 8  # LLM states (projected) + character features
    out = model.predict(docs)
    assert [o.shape for o in out] == [(5, WIDTH), (5, WIDTH)]
    outputs, backprop = model.begin_update(docs)
    backprop([np.ones_like(o) for o in outputs])
    # gradients reach both inputs of the BiLSTM: the hash embeddings and the LLM states' projection
    embed = next(node for node in model.walk() if node.name.startswith("hashembed"))
    assert np.abs(embed.get_grad("E")).sum() > 0
    llm_module = encoder_module(next(n for n in model.walk() if n.name == "llm_encoder"))
    assert llm_module.projection.weight.grad is not None and llm_module.projection.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="reads_features = true needs `features`"):
        llm_encoder_v1(model_name=str(tiny_gemma3_dir), features_into_contextualizer=True)
    with pytest.raises(ValueError, match="skip is for reads_features"):
        llm_encoder_v1(model_name=str(tiny_gemma3_dir), contextualizer_skip=True)


def test_the_bilstms_input_can_also_go_around_it(tiny_gemma3_dir, nlp):
    """contextualizer.skip: the output mixer reads the BiLSTM's output and its input (LLM states
    and character features), and the features still get gradient."""
    model = bilstm_reading_features(tiny_gemma3_dir, skip=True)
    docs = [nlp("Kumain ang bata ng mangga")]
    model.initialize(X=docs)
    mixer = next(node for node in model.walk() if node.name == "maxout")
    assert mixer.get_dim("nI") == 16 + WIDTH + 8  # BiLSTM output + LLM projection + features
    outputs, backprop = model.begin_update(docs)
    assert outputs[0].shape == (5, WIDTH)
    backprop([np.ones_like(o) for o in outputs])
    embed = next(node for node in model.walk() if node.name.startswith("hashembed"))
    assert np.abs(embed.get_grad("E")).sum() > 0


def test_a_batch_without_tokens_gives_empty_arrays(tiny_gemma3_dir, nlp):
    model = make_encoder(tiny_gemma3_dir, contextualizer_width=16)
    outputs, backprop = model.begin_update([nlp(""), nlp("")])
    assert [o.shape for o in outputs] == [(0, WIDTH), (0, WIDTH)]
    backprop(outputs)


def test_bidirectional_attention_is_refused_for_models_it_was_not_built_for(tiny_gemma3_dir, monkeypatch):
    from fillm_spacy.models.loading import load_base_llm

    llm = load_base_llm(str(tiny_gemma3_dir))
    monkeypatch.setattr(llm.model.config, "model_type", "llama")
    with pytest.raises(ValueError, match="bidirectional.*'llama'"):
        make_encoder(tiny_gemma3_dir, attention="bidirectional")


def test_weights_saved_before_format_2_are_refused(tiny_gemma3_dir, nlp):
    """Older files were trained on the final norm over the last layer run: refuse, never load silently."""
    import srsly

    model = make_encoder(tiny_gemma3_dir)
    shim = model.shims[0]
    msg = srsly.msgpack_loads(shim.to_bytes())
    del msg["format"]
    with pytest.raises(ValueError, match="format 1.*re-train"):
        shim.from_bytes(srsly.msgpack_dumps(msg))
    shim.from_bytes(shim.to_bytes())  # the current format round-trips


def test_a_forward_runs_in_its_own_modules_mode_whatever_another_encoder_set(tiny_gemma3_dir, nlp):
    """Two encoders share the base model, whose LoRA dropout follows train()/eval(): one
    encoder's eval() (another thread's nlp.pipe) must not switch off the other's dropout."""
    from fillm_spacy.layers.encoder_batch import docs_to_batch

    training, other = (encoder_module(make_encoder(tiny_gemma3_dir, lora_dropout=0.5)) for _ in range(2))
    seen = {training.adapter_name: [], other.adapter_name: []}
    hooks = []
    for name, module in training.base.named_modules():
        adapter = name.rpartition(".")[2]
        if ".lora_dropout." in name and adapter in seen:
            hooks.append(module.register_forward_hook(lambda m, i, o, a=adapter: seen[a].append(m.training)))
    batch = docs_to_batch(training.llm, 32, 24, causal=True, pooling="last")(
        None, [nlp("Kumain ng mangga ang bata.")], True
    )[0]
    training.train()
    other.eval()  # flips the shared base to eval
    training(*batch.args)
    other(*batch.args)
    for hook in hooks:
        hook.remove()
    assert seen[training.adapter_name] and all(seen[training.adapter_name])  # dropout on
    assert seen[other.adapter_name] and not any(seen[other.adapter_name])  # dropout off
