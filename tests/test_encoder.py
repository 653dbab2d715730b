import subprocess
import sys

import numpy as np
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam

from fillm_spacy.layers.llm_encoder import llm_encoder_v1

from .conftest import sample_docs

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
    texts = ["Ibang tao ang kumain ng mangga.", "", "   ", "😀🇵🇭 !!", "Mahal\u200bkita\tnang  lubos\n\n", "Hello, this is English text."]
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
    docs = [nlp("Kumain ng mangga ang bata."), nlp("Umuulan kahapon sa Maynila.")]
    outputs, backprop = model.begin_update(docs)
    backprop([np.ones_like(o) for o in outputs])
    module = encoder_module(model)
    lora = {n: p for n, p in module.named_parameters() if f".{module.adapter_name}." in n}
    base = {n: p for n, p in module.named_parameters() if n.startswith("base.") and n not in lora}
    assert lora and all(p.requires_grad for p in lora.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora.values())
    assert all(p.grad is None and not p.requires_grad for p in base.values())
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
    with pytest.raises(ValueError, match="last_layer"):
        make_encoder(tiny_gemma3_dir, last_layer=99)
    with pytest.raises(ValueError, match="pooling"):
        make_encoder(tiny_gemma3_dir, pooling="max")
    with pytest.raises(ValueError, match="attention"):
        make_encoder(tiny_gemma3_dir, attention="sideways")
    with pytest.raises(ValueError, match="contextualizer_depth"):
        make_encoder(tiny_gemma3_dir, contextualizer_width=16, contextualizer_depth=0)
    with pytest.raises(ValueError, match="contextualizer_dropout"):
        make_encoder(tiny_gemma3_dir, contextualizer_width=16, contextualizer_depth=2, contextualizer_dropout=1.0)


def test_stacked_bilstm_contextualizer_sees_right_context(tiny_gemma3_dir, nlp):
    model = make_encoder(tiny_gemma3_dir, contextualizer_width=16, contextualizer_depth=2, contextualizer_dropout=0.33)
    lstm = encoder_module(model).contextualizer
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
@architectures = "fillm.LLMEncoder.v1"
model_name = "{model_dir}"
width = 32
lora_r = 4
first_layer = 1
last_layer = 3
contextualizer_width = 32
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
    nlp, examples, start, end = trained_tagger
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
        spacy.load(tmp_path / "pipeline", config={"components": {"tok2vec": {"model": {"model_name": str(tiny_gemma_dir)}}}})


def test_architecture_is_registered_through_entry_points():
    code = "import spacy; f = spacy.registry.architectures.get('fillm.LLMEncoder.v1'); print(f.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "fillm_spacy.layers.llm_encoder"
