"""fillm.WithFeatures.v1: a head reads its listener and features of its own (the lemmatizer's
characters and static vectors), trains, and survives a save and load."""

import numpy
import spacy
from spacy.training import Example

from ..conftest import hash_embed_tok2vec, sample_docs

LEMMATIZER = {
    "model": {
        "@architectures": "spacy.Tagger.v2",
        "tok2vec": {
            "@architectures": "fillm.WithFeatures.v1",
            "tok2vec": {"@architectures": "spacy.Tok2VecListener.v1", "width": 32, "upstream": "tok2vec"},
            "features": {
                "@architectures": "spacy.MultiHashEmbed.v2",
                "width": 16,
                "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"],
                "rows": [500, 100, 250, 250],
                "include_static_vectors": True,
            },
        },
    },
    "min_tree_freq": 1,
}
TOK2VEC = hash_embed_tok2vec(32)


def lemma_accuracy(nlp, examples):
    return nlp.evaluate(examples)["lemma_acc"]


def test_lemmatizer_with_its_own_features_trains_and_round_trips(tmp_path):
    gold = sample_docs(30)
    nlp = spacy.blank("tl")
    rng = numpy.random.default_rng(0)
    for word in sorted({t.text for doc in gold for t in doc}):
        nlp.vocab.set_vector(word, rng.normal(size=8).astype("float32"))
    nlp.add_pipe("tok2vec", config=TOK2VEC)
    nlp.add_pipe("trainable_lemmatizer", config=LEMMATIZER)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold]
    optimizer = nlp.initialize(lambda: examples)

    assert nlp.get_pipe("tok2vec").listening_components == ["trainable_lemmatizer"]
    head_input = nlp.get_pipe("trainable_lemmatizer").model.get_ref("tok2vec")
    assert head_input.get_dim("nO") == 32 + 16
    before = lemma_accuracy(nlp, examples)
    optimizer.learn_rate = 0.01
    for _epoch in range(10):
        for batch in spacy.util.minibatch(examples, 5):
            nlp.update(batch, sgd=optimizer)
    after = lemma_accuracy(nlp, examples)
    assert after > before + 0.1, (before, after)  # the training set itself: the trees get learned

    nlp.to_disk(tmp_path / "nlp")
    reloaded = spacy.load(tmp_path / "nlp")
    texts = [doc.text for doc in gold]
    assert [[t.lemma_ for t in doc] for doc in reloaded.pipe(texts)] == [
        [t.lemma_ for t in doc] for doc in nlp.pipe(texts)
    ]
