"""fillm_spacy: a LoRA-tuned decoder LLM as a spaCy encoder, with heads and a calamanCy comparison."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fillm_spacy")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"


def load(name: str = "tl_fillm", **kwargs):
    """Load a fillm pipeline, as `calamancy.load(name)` loads a calamanCy one: the name of an
    installed pipeline package (`tl_fillm`, built by `spacy project run package`) or a path.
    Keyword arguments go to `spacy.load` (e.g. exclude=["ner"])."""
    import spacy  # imported here so that `import fillm_spacy` stays cheap

    return spacy.load(name, **kwargs)
