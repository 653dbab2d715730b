"""The biaffine parser: tree decoding, training through the LLM encoder, serialization, edge cases."""

import itertools
import random

import numpy as np
import pytest
import spacy
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Adam, Config
from ufal.chu_liu_edmonds import chu_liu_edmonds

from fillm_spacy.pipeline import mst
from fillm_spacy.pipeline.mst import allowed_arcs, decode_tree, tree_score
from fillm_spacy.pipeline.parser import ROOT_LABEL, training_docs

from ..conftest import hash_embed_tok2vec, sample_docs

WIDTH = 32
N_TRAIN = 10


# ---------------------------------------------------------------- tree decoding


def assert_tree(heads: np.ndarray, n: int) -> None:
    """heads[i - 1] is the head of token i (0 = ROOT): one root, heads in range, no cycles."""
    assert len(heads) == n
    assert all(0 <= h <= n for h in heads), heads
    assert all(h != i for i, h in enumerate(heads, start=1)), heads
    assert sum(h == 0 for h in heads) == (1 if n else 0), heads
    for token in range(1, n + 1):  # every token reaches the ROOT within n steps
        node, steps = token, 0
        while node != 0:
            node, steps = heads[node - 1], steps + 1
            assert steps <= n, f"cycle through token {token}: {heads}"


@st.composite
def score_matrices(draw, max_n=60):
    n = draw(st.integers(1, max_n))
    scores = draw(
        hnp.arrays(np.float64, (n + 1, n + 1), elements=st.floats(-50, 50, allow_nan=False, allow_infinity=False))
    )
    # A large bonus for attaching to the ROOT makes the unconstrained MST multi-rooted.
    scores[:, 0] += draw(st.sampled_from([0.0, 10.0, 100.0]))
    return scores


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(score_matrices())
def test_decode_tree_always_single_rooted_tree(scores):
    heads = decode_tree(scores)
    assert_tree(heads, scores.shape[0] - 1)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**32 - 1), st.sampled_from([0.0, 3.0, 30.0]))
def test_decode_tree_random_gaussian_scores(n, seed, root_bonus):
    scores = np.random.default_rng(seed).normal(size=(n + 1, n + 1))
    scores[:, 0] += root_bonus
    assert_tree(decode_tree(scores), n)


def is_single_rooted_tree(heads) -> bool:
    if sum(h == 0 for h in heads) != 1:
        return False
    for token in range(1, len(heads) + 1):
        node, steps = token, 0
        while node != 0 and steps <= len(heads):
            node, steps = heads[node - 1], steps + 1
        if node != 0:
            return False
    return True


def all_single_rooted_trees(n):
    candidates = [[h for h in range(n + 1) if h != token] for token in range(1, n + 1)]
    for heads in itertools.product(*candidates):
        if is_single_rooted_tree(heads):
            yield np.asarray(heads)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 5).flatmap(lambda n: hnp.arrays(np.float64, (n + 1, n + 1), elements=st.integers(-3, 3).map(float))),
    st.sampled_from([0.0, 2.0, 5.0]),
)
def test_decode_tree_is_best_single_rooted_tree(scores, root_bonus):
    """Brute force over every single-rooted tree: the decoder finds a best one (ties included)."""
    scores[:, 0] += root_bonus  # often several roots in the unconstrained MST
    n = scores.shape[0] - 1
    best = max(tree_score(scores, heads) for heads in all_single_rooted_trees(n))
    assert tree_score(scores, decode_tree(scores)) == pytest.approx(best)


def best_single_rooted_score_by_root(scores: np.ndarray) -> float:
    """Exhaustive over the ROOT's child: one plain MST per token allowed to hang from the ROOT
    (what the decoder used to do), so larger sentences than the brute force can be checked."""
    n = scores.shape[0] - 1
    best = -np.inf
    for root in range(1, n + 1):
        candidate = allowed_arcs(scores)
        candidate[1:, 0] = np.nan
        candidate[root, 0] = scores[root, 0]
        heads = np.asarray(chu_liu_edmonds(candidate)[0][1:])
        best = max(best, tree_score(scores, heads))
    return best


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2, 14).flatmap(
        lambda n: hnp.arrays(np.float64, (n + 1, n + 1), elements=st.integers(-3, 3).map(float))
    ),
    st.sampled_from([0.0, 2.0, 5.0, 50.0]),
    st.sampled_from([0.0, 1e6, -1e9]),
)
def test_decode_tree_score_equals_exhaustive_search_with_ties_and_offsets(scores, root_bonus, offset):
    """Integer scores tie often; a large common offset must not eat the ROOT penalty's margin."""
    scores[:, 0] += root_bonus
    scores += offset
    heads = decode_tree(scores)
    assert_tree(heads, scores.shape[0] - 1)
    assert tree_score(scores, heads) == pytest.approx(best_single_rooted_score_by_root(scores), abs=1e-6)


def pairs_that_want_many_roots(n: int, seed: int = 0) -> np.ndarray:
    """Tokens paired by strong mutual arcs and near-equal ROOT arcs: the plain MST hangs one token
    of every pair from the ROOT, and the old root-by-root search needed n + 1 MSTs."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n + 1, n + 1)) * 0.01
    for i in range(1, n, 2):
        scores[i, i + 1] = scores[i + 1, i] = 5.0
    scores[:, 0] = 4.0 + rng.normal(size=n + 1) * 0.01
    return scores


def test_decode_tree_256_tokens_is_one_mst_call(monkeypatch):
    calls = []

    def counting_mst(matrix):
        calls.append(matrix.shape)
        return chu_liu_edmonds(matrix)

    monkeypatch.setattr(mst, "chu_liu_edmonds", counting_mst)
    scores = pairs_that_want_many_roots(256)
    heads = decode_tree(scores)
    assert len(calls) == 1
    assert_tree(heads, 256)


def test_decode_tree_many_roots_matches_root_by_root_search():
    scores = pairs_that_want_many_roots(40, seed=1)
    heads = decode_tree(scores)
    assert_tree(heads, 40)
    assert tree_score(scores, heads) == pytest.approx(best_single_rooted_score_by_root(scores))


@pytest.mark.parametrize("bad", [np.nan, -np.inf, np.inf])
def test_decode_tree_refuses_nan_or_infinite_scores(bad):
    scores = np.zeros((4, 4))
    scores[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        decode_tree(scores)


# ---------------------------------------------------------------- losses


def numpy_reference_loss(arcs: np.ndarray, labels: np.ndarray, arc_targets, label_targets) -> float:
    """The parser's loss written out for one sentence in float64 numpy: softmax over each
    dependent's heads (ROOT included, itself excluded), then over labels at the gold head."""
    total = 0.0
    for d, (head, label) in enumerate(zip(arc_targets, label_targets), start=1):
        if head < 0:
            continue
        row = np.delete(np.arange(arcs.shape[1]), d)
        scores = arcs[d, row]
        total -= arcs[d, head] - np.log(np.exp(scores - scores.max()).sum()) - scores.max()
        if label >= 0:
            cell = labels[d, head]
            total -= cell[label] - np.log(np.exp(cell - cell.max()).sum()) - cell.max()
    return total


def test_padded_torch_loss_equals_the_per_sentence_loss_and_ignores_padding():
    """Two sentences (4 and 2 tokens) padded together: the loss is the sum of each sentence's
    own cross-entropies; padding cells and tokens without gold heads get no gradient."""
    from fillm_spacy.layers.biaffine import IGNORE, BiaffineDependencyModel, ScoredGroup

    rng = np.random.default_rng(0)
    n_labels = 3
    arcs = torch.tensor(rng.normal(size=(2, 5, 5)), requires_grad=True)
    labels = torch.tensor(rng.normal(size=(2, 5, 5, n_labels)), requires_grad=True)
    group = ScoredGroup([0, 1], [4, 2], arcs, labels)
    arc_targets = torch.tensor([[2, 0, -1, 3], [0, 1, IGNORE, IGNORE]])
    arc_targets = torch.where(arc_targets < 0, IGNORE, arc_targets)
    label_targets = torch.tensor([[1, IGNORE, IGNORE, 2], [IGNORE, 0, IGNORE, IGNORE]])
    loss = BiaffineDependencyModel.loss(group, arc_targets, label_targets)
    expected = numpy_reference_loss(arcs[0].detach().numpy(), labels[0].detach().numpy(), [2, 0, -1, 3], [1, -1, -1, 2])
    expected += numpy_reference_loss(
        arcs[1, :3, :3].detach().numpy(), labels[1, :3, :3].detach().numpy(), [0, 1], [-1, 0]
    )
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert not arcs.grad[1, 3:].any() and not arcs.grad[1, :, 3:].any()  # padding of the short sentence
    assert not arcs.grad[0, 0].any() and not arcs.grad[0, 3].any()  # ROOT row, token 3 without gold head
    assert not labels.grad[1, 3:].any()


def test_inference_scores_labels_at_the_chosen_heads_only_and_chooses_the_same_labels():
    """At inference a group keeps the label MLPs' outputs instead of every label's score on every
    arc; the labels chosen at given heads are those the full scores give."""
    from fillm_spacy.layers.biaffine import BiaffineDependencyModel

    torch.manual_seed(0)
    model = BiaffineDependencyModel(8, 5, 16, 8, 0.0)
    tokens, lengths = torch.randn(9, 8), [6, 3]
    model.train()
    (training,) = model(tokens, lengths)
    model.eval()
    (inference,) = model(tokens, lengths)
    assert training.labels.shape == (2, 7, 7, 5) and training.label_dep is None
    assert inference.labels is None and inference.label_dep.shape == inference.label_head.shape == (2, 7, 8)
    heads = torch.tensor([[0, 1, 1, 2, 6, 3], [2, 0, 2, 0, 0, 0]])
    expected = torch.stack(
        [torch.stack([training.labels[g, d + 1, heads[g, d]].argmax() for d in range(6)]) for g in range(2)]
    )
    assert torch.equal(BiaffineDependencyModel.best_labels(inference, heads), expected)
    assert torch.equal(BiaffineDependencyModel.best_labels(training, heads), expected)


# ---------------------------------------------------------------- pipelines


def gold_tokenized(nlp, gold: Doc) -> Doc:
    """The gold text with the gold tokens: UAS then measures the parser, not tokenization."""
    return Doc(nlp.vocab, words=[t.text for t in gold], spaces=[bool(t.whitespace_) for t in gold])


def character_features():
    """spaCy's own hash-embedding features, concatenated with the LLM's by the encoder."""
    return {
        "@architectures": "spacy.Tok2Vec.v2",
        "embed": {
            "@architectures": "spacy.MultiHashEmbed.v2",
            "width": WIDTH,
            "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"],
            "rows": [2000, 1000, 1000, 1000],
            "include_static_vectors": False,
        },
        "encode": {
            "@architectures": "spacy.MaxoutWindowEncoder.v2",
            "width": WIDTH,
            "depth": 2,
            "window_size": 1,
            "maxout_pieces": 3,
        },
    }


def parser_config(width=WIDTH):
    return {
        "model": {
            "arc_mlp_width": 64,
            "label_mlp_width": 32,
            "dropout": 0.0,  # overfitting is the point here
            "tok2vec": {"@architectures": "spacy.Tok2VecListener.v1", "width": width, "upstream": "*"},
        }
    }


def build_llm_pipeline(model_dir):
    nlp = spacy.blank("tl")
    encoder = {
        "@architectures": "fillm.LLMEncoder.v1",
        "model_name": str(model_dir),
        "width": WIDTH,
        "first_layer": 0,
        "last_layer": 3,
        "lora_r": 4,
        "lora_dropout": 0.0,
        "window": 64,
        "stride": 48,
        "features": character_features(),
    }
    nlp.add_pipe("tok2vec", config={"model": encoder})
    nlp.add_pipe("fillm_parser", name="parser", config=parser_config())
    return nlp


def lora_weights(nlp):
    encoder = next(node for node in nlp.get_pipe("tok2vec").model.walk() if node.name == "llm_encoder")
    module = encoder.shims[0]._model
    return {n: p.detach().clone() for n, p in module.llm.model.named_parameters() if module.adapter_name in n}


def parses(docs):
    return [[(t.head.i, t.dep_) for t in doc] for doc in docs]


@pytest.fixture(scope="module")
def trained(tiny_gemma3_dir):
    """The tiny random Gemma 3 + LoRA + character features + biaffine parser, overfit to 10
    NewsCrawl sentences (trained until UAS >= 0.95 on them, at most MAX_STEPS updates)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    spacy.util.fix_random_seed(0)
    nlp = build_llm_pipeline(tiny_gemma3_dir)
    gold = sample_docs(N_TRAIN)
    examples = [Example(gold_tokenized(nlp, doc), doc) for doc in gold]
    nlp.initialize(lambda: examples)
    lora_before = lora_weights(nlp)
    optimizer = Adam(0.003)
    scores = {"dep_uas": 0.0}
    for step in range(1, 61):
        nlp.update(examples, sgd=optimizer, losses={})
        if step >= 15 and step % 5 == 0:
            scores = nlp.evaluate(examples)
            if scores["dep_uas"] >= 0.97:
                break
    scores["steps"] = step
    return nlp, examples, scores, lora_before


def test_parser_listens_to_the_llm_encoder(trained):
    nlp, *_ = trained
    assert nlp.get_pipe("tok2vec").listening_components == ["parser"]
    assert nlp.get_pipe_meta("parser").factory == "fillm_parser"


def test_overfits_ten_sentences(trained):
    nlp, examples, scores, lora_before = trained
    assert scores["dep_uas"] >= 0.95, scores
    assert scores["dep_las"] >= 0.9, scores
    # spaCy's parser scorer, as `spacy evaluate` reports it
    assert {"dep_uas", "dep_las", "dep_las_per_type", "sents_f"} <= set(scores)
    assert scores["sents_f"] == 1.0
    # the parser's loss reached the encoder's LoRA adapter (its B matrices start at zero)
    lora_after = lora_weights(nlp)
    assert lora_before and any(not torch.equal(lora_before[n], lora_after[n]) for n in lora_before)
    # labels come from the data, UD subtypes included; the root's label is structural
    labels = nlp.get_pipe("parser").labels
    assert "nmod:poss" in labels and "obj:agent" in labels and ROOT_LABEL not in labels
    doc = nlp(gold_tokenized(nlp, examples[0].reference))
    roots = [t for t in doc if t.head.i == t.i]
    assert len(roots) == 1 and roots[0].dep_ == ROOT_LABEL


def test_serialization_round_trip(trained, tmp_path):
    nlp, examples, *_ = trained
    texts = [eg.reference.text for eg in examples] + ["Kumain ako ng mangga kahapon sa Maynila."]
    before = parses(nlp.pipe([gold_tokenized(nlp, eg.reference) for eg in examples]))
    before_texts = parses(nlp.pipe(texts))
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("parser").labels == nlp.get_pipe("parser").labels
    assert loaded.get_pipe("tok2vec").listening_components == ["parser"]
    assert parses(loaded.pipe([gold_tokenized(loaded, eg.reference) for eg in examples])) == before
    assert parses(loaded.pipe(texts)) == before_texts


def assert_doc_trees(doc: Doc) -> None:
    """Every sentence of a parsed doc is one tree inside the sentence, rooted at `root`."""
    for sent in doc.sents:
        roots = [t for t in sent if t.head.i == t.i]
        assert len(roots) == 1, [(t.text, t.head.i) for t in sent]
        assert roots[0].dep_ == ROOT_LABEL
        for token in sent:
            assert sent.start <= token.head.i < sent.end
            assert token.dep_
            seen = set()
            while token.head.i != token.i:
                assert token.i not in seen, "cycle"
                seen.add(token.i)
                token = token.head


@pytest.mark.parametrize("text", ["", "Oo", "!", "...", "— , . ? !", "  ", "!!! ??? ..."])
def test_degenerate_docs_parse(trained, text):
    nlp, *_ = trained
    doc = nlp(text)
    assert_doc_trees(doc)
    if len(doc) == 1:
        assert doc[0].head.i == 0 and doc[0].dep_ == ROOT_LABEL


def test_degenerate_docs_in_one_batch(trained):
    nlp, *_ = trained
    texts = ["", "Oo", "Ang bahay ay malaki.", "", "...", "Tumakbo siya."]
    docs = list(nlp.pipe(texts, batch_size=8))
    assert [doc.text for doc in docs] == texts
    for doc in docs:
        assert_doc_trees(doc)


def test_parses_each_sentence_separately(trained):
    """With sentence boundaries (as a senter sets them), one tree per sentence, never across."""
    nlp, examples, *_ = trained
    first, second = examples[0].reference, examples[1].reference
    doc = Doc.from_docs([gold_tokenized(nlp, first), gold_tokenized(nlp, second)])
    for token in doc:
        token.is_sent_start = token.i in (0, len(first))
    for _, component in nlp.pipeline:
        doc = component(doc)
    assert [(s.start, s.end) for s in doc.sents] == [(0, len(first)), (len(first), len(doc))]
    assert_doc_trees(doc)


# ---------------------------------------------------------------- training edge cases


def build_small_pipeline():
    """spaCy's own CNN tok2vec: the parser needs only a listener, and this is fast."""
    nlp = spacy.blank("tl")
    nlp.add_pipe("tok2vec", config=hash_embed_tok2vec(WIDTH))
    nlp.add_pipe("fillm_parser", name="parser", config=parser_config())
    return nlp


def test_unseen_label_in_update_is_ignored():
    nlp = build_small_pipeline()
    gold = sample_docs(3)
    examples = [Example(gold_tokenized(nlp, doc), doc) for doc in gold]
    nlp.initialize(lambda: examples)
    labels = nlp.get_pipe("parser").labels
    words = ["Kumain", "ang", "bata", "."]
    unseen = "obl:never-seen"
    assert unseen not in labels
    reference = Doc(nlp.vocab, words=words, heads=[0, 2, 0, 0], deps=["ROOT", "det", unseen, "punct"])
    partial = Doc(nlp.vocab, words=words, heads=[0, 2, 2, 0], deps=["ROOT", "", "", "punct"])  # missing annotation
    batch = examples + [Example(Doc(nlp.vocab, words=words), reference), Example(Doc(nlp.vocab, words=words), partial)]
    optimizer = nlp.create_optimizer()
    for _ in range(3):
        losses = nlp.update(batch, sgd=optimizer, losses={})
        assert np.isfinite(losses["parser"]) and losses["parser"] > 0
    assert nlp.get_pipe("parser").labels == labels
    assert_doc_trees(nlp(Doc(nlp.vocab, words=words)))


def test_training_uses_gold_sentences_when_predicted_has_none():
    nlp = spacy.blank("tl")
    first, second = sample_docs(2)
    reference = Doc.from_docs([first, second])
    predicted = Doc(nlp.vocab, words=[t.text for t in reference], spaces=[bool(t.whitespace_) for t in reference])
    example = Example(predicted, reference)
    (doc,) = training_docs([example])
    assert [(s.start, s.end) for s in doc.sents] == [(0, len(first)), (len(first), len(reference))]
    assert not predicted.has_annotation("SENT_START")  # a copy: the predicted doc is untouched
    sentenced = Doc(nlp.vocab, words=[t.text for t in reference], sent_starts=[True] + [False] * (len(reference) - 1))
    (kept,) = training_docs([Example(sentenced, reference)])
    assert kept is sentenced  # predicted boundaries (from a senter) win


def test_multi_sentence_training_docs_update():
    """A corpus doc of several sentences without predicted boundaries trains sentence by sentence."""
    nlp = build_small_pipeline()
    reference = Doc.from_docs(sample_docs(3))
    example = Example(gold_tokenized(nlp, reference), reference)
    nlp.initialize(lambda: [example])
    optimizer = nlp.create_optimizer()
    losses = {}
    for _ in range(2):
        losses = nlp.update([example], sgd=optimizer, losses={})
    assert np.isfinite(losses["parser"])
    doc = gold_tokenized(nlp, reference)
    doc = nlp(doc)
    assert_doc_trees(doc)


def test_replace_listeners_keeps_parses():
    """`nlp.replace_listeners` (spaCy's way to freeze a shared tok2vec) gives the parser its own copy."""
    nlp = build_small_pipeline()
    gold = sample_docs(3)
    examples = [Example(gold_tokenized(nlp, doc), doc) for doc in gold]
    nlp.initialize(lambda: examples)
    optimizer = nlp.create_optimizer()
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    docs = [gold_tokenized(nlp, doc) for doc in gold]
    before = parses(nlp.pipe([d.copy() for d in docs]))
    nlp.replace_listeners("tok2vec", "parser", ["model.tok2vec"])
    assert nlp.get_pipe("tok2vec").listening_components == []
    assert parses(nlp.pipe([d.copy() for d in docs])) == before


def small_trained_llm_pipeline(model_dir, steps=3, optimizer=None):
    nlp = build_llm_pipeline(model_dir)
    gold = sample_docs(3)
    examples = [Example(gold_tokenized(nlp, doc), doc) for doc in gold]
    nlp.initialize(lambda: examples)
    optimizer = optimizer or Adam(0.003)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp, [gold_tokenized(nlp, doc) for doc in gold], optimizer


def test_replace_listeners_copies_the_llm_encoder_and_shares_the_base_model(tiny_gemma3_dir):
    """spaCy's documented way to freeze a shared tok2vec copies the encoder into the parser;
    the copy must share the one base LLM and own an adapter with the same weights."""
    nlp, docs, _ = small_trained_llm_pipeline(tiny_gemma3_dir)
    before = parses(nlp.pipe([d.copy() for d in docs]))
    nlp.replace_listeners("tok2vec", "parser", ["model.tok2vec"])
    assert nlp.get_pipe("tok2vec").listening_components == []
    assert parses(nlp.pipe([d.copy() for d in docs])) == before
    original, copied = (
        next(node for node in model.walk() if node.name == "llm_encoder").shims[0]._model
        for model in (nlp.get_pipe("tok2vec").model, nlp.get_pipe("parser").model)
    )
    assert copied is not original and copied.llm is original.llm
    assert copied.adapter_name != original.adapter_name
    # Both adapters train in one update: the copy's forward pass (peft's set_adapter) must not
    # leave the tok2vec's adapter frozen before the tok2vec's backward pass.
    nlp.add_pipe(
        "tagger",
        config={
            "model": {
                "@architectures": "spacy.Tagger.v2",
                "tok2vec": {"@architectures": "spacy.Tok2VecListener.v1", "width": WIDTH, "upstream": "tok2vec"},
            }
        },
    )
    examples = [Example(d.copy(), g) for d, g in zip(docs, sample_docs(3))]
    nlp.get_pipe("tagger").initialize(lambda: examples, nlp=nlp)
    assert nlp.get_pipe("tok2vec").listening_components == ["tagger"]

    def adapter(module):
        return {
            n: p.detach().clone() for n, p in module.llm.model.named_parameters() if f".{module.adapter_name}." in n
        }

    before_tok2vec, before_copy = adapter(original), adapter(copied)
    nlp.update(examples, sgd=Adam(0.01))
    after_tok2vec, after_copy = adapter(original), adapter(copied)
    assert any(not torch.equal(after_tok2vec[n], v) for n, v in before_tok2vec.items()), "tok2vec adapter did not train"
    assert any(not torch.equal(after_copy[n], v) for n, v in before_copy.items()), "the parser's copy did not train"


def test_sourcing_a_listening_parser_with_replace_listeners(tiny_gemma3_dir, tmp_path):
    nlp, docs, _ = small_trained_llm_pipeline(tiny_gemma3_dir)
    before = parses(nlp.pipe([d.copy() for d in docs]))
    nlp.to_disk(tmp_path / "trained")
    config = {
        "nlp": {"lang": "tl", "pipeline": ["parser"]},
        "components": {"parser": {"source": str(tmp_path / "trained"), "replace_listeners": ["model.tok2vec"]}},
    }
    sourced = spacy.util.load_model_from_config(Config(config), auto_fill=True)
    assert sourced.pipe_names == ["parser"]
    assert parses(sourced.pipe([d.copy() for d in docs])) == before


def test_parameter_averages_cover_the_adapter_and_the_encoder(tiny_gemma3_dir):
    """With use_averages, nlp.use_params swaps in the averages of LoRA and the encoder's own
    weights, not only those of the heads, and restores them afterwards."""
    optimizer = Adam(0.01, use_averages=True)
    nlp, _, optimizer = small_trained_llm_pipeline(tiny_gemma3_dir, steps=4, optimizer=optimizer)
    encoder = next(node for node in nlp.get_pipe("tok2vec").model.walk() if node.name == "llm_encoder")
    module = encoder.shims[0]._model
    current = {n: p.detach().clone() for n, p in module.trainable_named_parameters()}
    assert any(f".{module.adapter_name}." in n for n in current)
    with nlp.use_params(optimizer.averages):
        inside = {n: p.detach().clone() for n, p in module.trainable_named_parameters()}
    changed = {n for n in current if not torch.equal(inside[n], current[n])}
    assert any(f".{module.adapter_name}." in n for n in changed), "LoRA averages were not used"
    assert any(n.startswith("projection.") for n in changed), "encoder averages were not used"
    restored = dict(module.trainable_named_parameters())
    assert all(torch.equal(restored[n].detach(), v) for n, v in current.items())


# ---------------------------------------------------------------- weights on disk


def small_initialized_parser():
    nlp = build_small_pipeline()
    gold = sample_docs(3)
    examples = [Example(gold_tokenized(nlp, doc), doc) for doc in gold]
    nlp.initialize(lambda: examples)
    return nlp, [gold_tokenized(nlp, doc) for doc in gold]


def biaffine_shim(nlp):
    return next(node for node in nlp.get_pipe("parser").model.walk() if node.shims).shims[0]


def biaffine_state_bytes(nlp) -> bytes:
    import srsly

    return srsly.msgpack_loads(biaffine_shim(nlp).to_bytes())["state"]


def arc_scores(nlp, docs):
    from fillm_spacy.pipeline.parser import sentence_spans

    docs = list(nlp.get_pipe("tok2vec").pipe([d.copy() for d in docs]))
    groups = nlp.get_pipe("parser").model.predict((docs, sentence_spans(docs)))
    return [g.arcs[row, : n + 1, : n + 1].numpy().copy() for g in groups for row, n in enumerate(g.lengths)]


def test_biaffine_weights_are_saved_as_safetensors_and_round_trip(tmp_path):
    from safetensors.torch import load

    nlp, docs = small_initialized_parser()
    state = biaffine_state_bytes(nlp)
    assert not state.startswith(b"PK") and not state.startswith(b"\x80"), "torch.save's zip/pickle"
    saved = load(state)
    module = biaffine_shim(nlp)._model
    assert saved.keys() == module.state_dict().keys()
    assert all(torch.equal(saved[k], v.cpu()) for k, v in module.state_dict().items())
    before = arc_scores(nlp, docs)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    for a, b in zip(before, arc_scores(loaded, docs)):
        np.testing.assert_array_equal(a, b)
    # the byte round trip into a fresh, uninitialized pipeline (the label scorer is resized)
    fresh = build_small_pipeline()
    fresh.from_bytes(nlp.to_bytes())
    for a, b in zip(before, arc_scores(fresh, docs)):
        np.testing.assert_array_equal(a, b)


def test_biaffine_weights_saved_with_torch_save_still_load():
    """Pipelines saved before the switch to safetensors hold a torch.save'd plain state dict."""
    import io

    import srsly

    nlp, docs = small_initialized_parser()
    before = arc_scores(nlp, docs)
    shim = biaffine_shim(nlp)
    legacy = io.BytesIO()
    torch.save(shim._model.state_dict(), legacy)
    fresh = build_small_pipeline()
    fresh.from_bytes(nlp.to_bytes())
    biaffine_shim(fresh).from_bytes(srsly.msgpack_dumps({"config": shim.cfg, "state": legacy.getvalue()}))
    for a, b in zip(before, arc_scores(fresh, docs)):
        np.testing.assert_array_equal(a, b)


class _Payload:
    """Unpickling this creates a file: the proof that a loader executed it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("container", ["torch.save", "pickle"])
def test_biaffine_refuses_a_pickle_payload_without_running_it(tmp_path, container):
    import io
    import pickle

    import srsly

    nlp, _ = small_initialized_parser()
    shim = biaffine_shim(nlp)
    marker = tmp_path / "pwned"
    if container == "torch.save":
        buffer = io.BytesIO()
        torch.save({"label_attn.weight": _Payload(marker)}, buffer)
        payload = buffer.getvalue()
    else:
        payload = pickle.dumps({"label_attn.weight": _Payload(marker)}, protocol=2)
    with pytest.raises(ValueError, match="re-train the parser") as error:
        shim.from_bytes(srsly.msgpack_dumps({"config": shim.cfg, "state": payload}))
    assert "\n" not in str(error.value)
    assert not marker.exists()
    # the control: an unrestricted unpickler does run it
    loaded = torch.load(io.BytesIO(payload), weights_only=False) if container == "torch.save" else pickle.loads(payload)
    loaded["label_attn.weight"].close()
    assert marker.exists()
