"""`POSTaggingTask`: spacy-llm's BuiltinTask for UPOS tagging, with its sharding (sentences,
then slices of at most max_tokens_per_prompt tokens), its shard reducer and its scorer."""

import math
from importlib.resources import files
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example
from spacy_llm.tasks.builtin_task import BuiltinTask
from spacy_llm.ty import ShardMapper, ShardReducer, TaskResponseParser

from .util import UPOS_DEFINITIONS, USER_DATA_KEY, POSExample

# The prompt (Jinja): step-by-step instructions, the tag definitions, few-shot examples, then the
# numbered tokens of the sentence and the started answer.
POS_TEMPLATE_V1 = files("fillm_spacy.llm.tasks").joinpath("templates", "pos.v1.jinja").read_text(encoding="utf8")


def token_slices(doc: Doc, max_tokens: int) -> List[Doc]:
    """The doc's sentences (the whole doc if it has none), each cut into slices of at most
    `max_tokens` tokens; a doc with no tokens is its own single slice."""
    units = list(doc.sents) if doc.has_annotation("SENT_START") else [doc[:]]
    slices = [
        doc[start : min(start + max_tokens, unit.end)].as_doc(copy_user_data=True)
        for unit in units
        for start in range(unit.start, unit.end, max_tokens)
    ]
    return slices or [doc]


def make_slicing_shard_mapper(max_tokens_per_prompt: int, fit_to_context: ShardMapper) -> ShardMapper:
    """Token slices of the doc (`token_slices`), each sharded further by `fit_to_context` when its
    prompt exceeds the model's context length."""

    def map_doc_to_shards(doc: Doc, i_doc: int, context_length: int, render_template: Callable) -> List[Doc]:
        return [
            shard
            for piece in token_slices(doc, max_tokens_per_prompt)
            for shard in fit_to_context(piece, i_doc, context_length, render_template)
        ]

    return map_doc_to_shards


def reduce_shards_to_doc(task: "POSTaggingTask", shards: Iterable[Doc]) -> Doc:
    """The doc again from its shards. They are consecutive token slices that carry their own
    whitespace, so they are joined as they are (ensure_whitespace would add a space between two
    slices of "Maria." cut before the period)."""
    return Doc.from_docs(list(shards), ensure_whitespace=False)


def score_pos(examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
    """spaCy's token-attribute scorer on `pos` (gold/predicted tokenizations aligned)."""
    return Scorer.score_token_attr(examples, "pos", **kwargs)


class POSTaggingTask(BuiltinTask):
    """One prompt per shard (see the module docstring); sets `token.pos_` on every token from the
    parsed tables and counts the repairs."""

    def __init__(
        self,
        *,
        parse_responses: TaskResponseParser["POSTaggingTask"],
        prompt_example_type: type,
        template: str,
        prompt_examples: Optional[List["POSExample"]],
        shard_mapper: ShardMapper,
        shard_reducer: ShardReducer["POSTaggingTask"],
        language: str,
        max_tokens_per_prompt: int,
        repair_tag: str,
        start_answer: bool,
        scorer: Callable[..., Dict[str, Any]],
    ):
        if repair_tag not in UPOS_DEFINITIONS:
            raise ValueError(f"repair_tag must be a UPOS tag, not '{repair_tag}'")
        if max_tokens_per_prompt < 1:
            raise ValueError("max_tokens_per_prompt must be at least 1")
        super().__init__(
            parse_responses=parse_responses,
            prompt_example_type=prompt_example_type,
            template=template,
            prompt_examples=prompt_examples,
            shard_mapper=make_slicing_shard_mapper(max_tokens_per_prompt, shard_mapper),
            shard_reducer=shard_reducer,
        )
        self._language = language
        self._repair_tag = repair_tag
        self._start_answer = start_answer
        self._scorer = scorer
        self.counts = {"tokens": 0, "repaired": 0, "missing": 0, "invalid": 0, "responses": 0}

    @property
    def prompt_examples(self) -> List["POSExample"]:
        return self._prompt_examples

    @property
    def repair_tag(self) -> str:
        return self._repair_tag

    @property
    def _cfg_keys(self) -> List[str]:
        return ["_template", "_language", "_repair_tag", "_start_answer"]

    def generate_prompts(
        self, docs: Iterable[Doc], context_length: Optional[int] = None
    ) -> Iterable[Tuple[Iterable[Any], Iterable[Doc]]]:
        """Per doc: (prompts, shards), one prompt per shard. spacy-llm shards only when the model
        reports a context length; the token slices are cut whatever the model."""
        return super().generate_prompts(docs, math.inf if context_length is None else context_length)

    @staticmethod
    def prompt_tokens(shard: Doc) -> List[str]:
        """Tokens the model is asked about: whitespace tokens have no UD tag and are left out."""
        return [t.text for t in shard if not t.is_space]

    def answer_start(self, tokens: Sequence[str]) -> str:
        """The part of the answer the prompt already contains (the first row up to its tag)."""
        return f"1\t{tokens[0]}\t" if self._start_answer and tokens else ""

    def _get_prompt_data(self, shard: Doc, i_shard: int, i_doc: int, n_shards: int) -> Dict[str, Any]:
        tokens = self.prompt_tokens(shard)
        return {
            "tokens": tokens,
            "language": self._language,
            "definitions": UPOS_DEFINITIONS,
            "answer_start": self.answer_start(tokens),
        }

    def parse_responses(self, shards: Iterable[Iterable[Doc]], responses: Iterable[Iterable[str]]) -> Iterable[Doc]:
        """Set `pos_` on every token of each doc; record what had to be repaired."""
        shards_teed = self._tee_2d_iterable(shards, 2)
        for doc_shards, parsed_shards in zip(shards_teed[0], self._parse_responses(self, shards_teed[1], responses)):
            stats = {"tokens": 0, "repaired": 0, "missing": 0, "invalid": 0}
            for shard, parsed in zip(doc_shards, parsed_shards):
                asked = [t for t in shard if not t.is_space]
                for token, tag in zip(asked, parsed.tags):
                    token.pos_ = tag
                for token in shard:
                    if token.is_space:
                        token.pos_ = "X"  # no UD tag for whitespace; not asked, so not a repair
                stats["tokens"] += len(asked)
                stats["repaired"] += parsed.n_repaired
                stats["missing"] += parsed.n_missing
                stats["invalid"] += parsed.n_invalid
            doc = self._shard_reducer(self, doc_shards)
            doc.user_data[USER_DATA_KEY] = stats
            for key, value in stats.items():
                self.counts[key] += value
            self.counts["responses"] += len(doc_shards)
            yield doc

    def scorer(self, examples: Iterable[Example]) -> Dict[str, Any]:
        return self._scorer(examples)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        nlp: Language,
        n_prompt_examples: int = 0,
    ) -> None:
        """Take up to `n_prompt_examples` few-shot examples (-1: all) from the gold examples, in
        place of the current ones (the built-in examples included); 0 keeps the current ones."""
        if n_prompt_examples == 0:
            return
        self._prompt_examples = []
        super()._initialize(get_examples=get_examples, nlp=nlp, n_prompt_examples=n_prompt_examples)
