"""`fillm.WithFeatures.v1`: one head's input = the shared encoder's vectors + features of its own.

A head that needs what the shared encoder smooths away (the trainable lemmatizer: an edit tree
is read off the word's characters) gets its own embedding of them beside its listener, without
widening what every other head reads.
"""

from typing import List

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, concatenate
from thinc.types import Floats2d


@registry.architectures("fillm.WithFeatures.v1")
def with_features_v1(
    tok2vec: Model[List[Doc], List[Floats2d]],
    features: Model[List[Doc], List[Floats2d]],
) -> Model[List[Doc], List[Floats2d]]:
    """Each token's `tok2vec` vector (usually a `spacy.Tok2VecListener.v1`) concatenated with its
    `features` vector (e.g. `spacy.MultiHashEmbed.v2` over NORM, PREFIX, SUFFIX, SHAPE and the
    static vectors); the width is the sum of theirs."""
    both = concatenate(tok2vec, features)
    dims = (
        {"nO": tok2vec.get_dim("nO") + features.get_dim("nO")}
        if tok2vec.has_dim("nO") and features.has_dim("nO")
        else {"nO": None}
    )
    return Model("with_features", _forward, init=_init, layers=[both], dims=dims)


def _forward(model: Model, docs: List[Doc], is_train: bool):
    return model.layers[0](docs, is_train)


def _init(model: Model, X=None, Y=None) -> None:
    # Y is the head's labels: not a target for the features (StaticVectors would read it as one).
    model.layers[0].initialize(X=X)
    model.set_dim("nO", model.layers[0].get_dim("nO"))
