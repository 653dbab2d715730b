"""UPOS tags and their definitions, the built-in Tagalog few-shot examples, and the few-shot
example type of `fillm.POSTagging.v1`."""

from typing import TYPE_CHECKING, List, Optional

from spacy.training import Example
from spacy_llm.ty import FewshotExample

if TYPE_CHECKING:
    from .task import POSTaggingTask

UPOS_DEFINITIONS = {
    "ADJ": "adjective",
    "ADP": "adposition (e.g. sa, ng, ni, kay)",
    "ADV": "adverb (e.g. hindi, pa, rin, lang)",
    "AUX": "auxiliary",
    "CCONJ": "coordinating conjunction (e.g. at, pero, o)",
    "DET": "determiner (e.g. ang, si, mga)",
    "INTJ": "interjection",
    "NOUN": "noun",
    "NUM": "numeral",
    "PART": "particle (e.g. ay, na, -ng)",
    "PRON": "pronoun",
    "PROPN": "proper noun",
    "PUNCT": "punctuation",
    "SCONJ": "subordinating conjunction (e.g. kung, dahil, para)",
    "SYM": "symbol",
    "VERB": "verb",
    "X": "other",
}
UPOS_TAGS = tuple(UPOS_DEFINITIONS)
# UD v1 names and frequent near-misses that name a UPOS tag unambiguously.
TAG_ALIASES = {"CONJ": "CCONJ", "PUNC": "PUNCT", "PROP": "PROPN", "PROPER": "PROPN", "ADVERB": "ADV"}
USER_DATA_KEY = "fillm_pos"

# Hand-written examples in UD_Tagalog-NewsCrawl's conventions (ng/sa = ADP, ang/si/mga = DET).
DEFAULT_EXAMPLES = [
    {
        "text": "Kumain si Maria ng mangga sa bahay kahapon.",
        "tokens": ["Kumain", "si", "Maria", "ng", "mangga", "sa", "bahay", "kahapon", "."],
        "tags": ["VERB", "DET", "PROPN", "ADP", "NOUN", "ADP", "NOUN", "ADV", "PUNCT"],
    },
    {
        "text": "Hindi pa dumating ang guro at ang mga estudyante.",
        "tokens": ["Hindi", "pa", "dumating", "ang", "guro", "at", "ang", "mga", "estudyante", "."],
        "tags": ["ADV", "ADV", "VERB", "DET", "NOUN", "CCONJ", "DET", "DET", "NOUN", "PUNCT"],
    },
]


class POSExample(FewshotExample["POSTaggingTask"]):
    """A few-shot example: a sentence, its tokens and their UPOS tags."""

    text: str
    tokens: List[str]
    tags: List[str]

    @classmethod
    def generate(cls, example: Example, task: "POSTaggingTask") -> Optional["POSExample"]:
        """From a gold doc whose every (non-whitespace) token has a UPOS tag; else None."""
        tokens = [t for t in example.reference if not t.is_space]
        if not tokens or any(t.pos_ not in UPOS_DEFINITIONS for t in tokens):
            return None
        return cls(text=example.reference.text, tokens=[t.text for t in tokens], tags=[t.pos_ for t in tokens])
