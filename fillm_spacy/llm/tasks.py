"""`fillm.POSTagging.v1`: a spacy-llm task that sets `token.pos_` from a generated UPOS table.

spacy-llm 0.7 has no part-of-speech task. This one follows Matsuda et al. (2025, arXiv
2506.09983): step-by-step instructions and a simple CoNLL-U-like table, one line per token,

    1<TAB>Kumain<TAB>VERB
    2<TAB>si<TAB>DET

The prompt lists the spaCy tokens already numbered, so the answer maps back to tokens by
number, never by re-tokenizing the model's text. By default the answer is started for the
model ("1<TAB>first token<TAB>"): a small base model otherwise tends to copy the token list
again instead of tagging it; the parser reads the started row as part of the answer. The parser
is lenient about form (tabs, pipes or spaces between columns; the form column may be missing)
and strict about content: a token whose tag is missing, unreadable or not a UPOS tag is repaired
to `X`, and every repair is counted, per doc in `doc.user_data["fillm_pos"]` and in total on the
task (`task.counts`).

The task is a spacy-llm `BuiltinTask`, built like `spacy.Lemma.v1`: spacy-llm renders the
prompts, shards what does not fit the model's `context_length` (`spacy.ShardMapper.v1` by
default) and serializes the task. Ahead of that sharding, a doc is cut into its sentences and
those into slices of at most `max_tokens_per_prompt` tokens, whatever the model: the answer grows
with the tokens asked, and a prompt's answer table must fit the model's `max_new_tokens`.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example
from spacy_llm.tasks.builtin_task import BuiltinTask
from spacy_llm.tasks.util.sharding import make_shard_mapper
from spacy_llm.ty import ExamplesConfigType, FewshotExample, ShardMapper, ShardReducer, TaskResponseParser

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

POS_TEMPLATE_V1 = """You are an expert linguist. Tag every token of a {{ language }} sentence with its Universal Dependencies part-of-speech tag (UPOS).

Tags:
{% for tag, definition in definitions.items() -%}
{{ tag }}: {{ definition }}
{% endfor %}
Follow these steps:
1. Read the whole sentence first.
2. Take the numbered tokens one by one, in order. Do not skip, merge, split or add tokens.
3. Give each token exactly one tag from the list above.
4. Write one line per token: its number, a tab, the token, a tab, its tag. Write nothing else.
{% for example in prompt_examples %}
Sentence: {{ example.text }}
Tokens:
{% for token in example.tokens -%}
{{ loop.index }}	{{ token }}
{% endfor -%}
Answer:
{% for token in example.tokens -%}
{{ loop.index }}	{{ token }}	{{ example.tags[loop.index0] }}
{% endfor -%}
{% endfor %}
Sentence: {{ text | trim }}
Tokens:
{% for token in tokens -%}
{{ loop.index }}	{{ token }}
{% endfor -%}
Answer:
{{ answer_start }}"""

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


@dataclass
class TableParse:
    """What the parser made of one response for `n` tokens."""

    tags: List[str]
    n_missing: int = 0  # no line for the token (response truncated, lines skipped)
    n_invalid: int = 0  # a line for the token, but no valid UPOS tag in it
    n_unparsed_lines: int = 0  # non-empty lines that are not table rows
    extra_lines: List[str] = field(default_factory=list)  # rows for tokens that do not exist

    @property
    def n_repaired(self) -> int:
        return self.n_missing + self.n_invalid


_ROW_SPLIT = re.compile(r"\t+|\s*\|\s*|\s{2,}")


def _split_row(line: str) -> List[str]:
    """Columns of a table row: tabs, pipes, or runs of spaces; a lone space separates the
    number and the tag from the form ("3 Maria PROPN") when nothing else does."""
    cells = [c.strip() for c in _ROW_SPLIT.split(line.strip()) if c.strip()]
    if len(cells) == 1 and " " in cells[0]:
        cells = cells[0].split(" ")
    return cells


def normalize_tag(raw: str) -> Optional[str]:
    """The UPOS tag a cell names ("NOUN", "noun", "`PROPN` (proper noun)"), or None."""
    words = re.findall(r"[A-Za-z]+", raw)
    if not words:
        return None
    candidate = words[0].upper()
    if candidate in UPOS_DEFINITIONS:
        return candidate
    return TAG_ALIASES.get(candidate)


def _same_form(token: str, form: str) -> bool:
    return token.casefold() == form.casefold()


def _match_ahead(tokens: Sequence[str], seen: Sequence[bool], cursor: int, form: str, window: int = 3) -> Optional[int]:
    """The first untagged token from `cursor` on (at most `window` ahead) whose text is `form`."""
    for position in range(cursor, min(cursor + window, len(tokens))):
        if not seen[position] and _same_form(tokens[position], form):
            return position
    return None


def parse_pos_table(response: str, tokens: Sequence[str], repair_tag: str = "X") -> TableParse:
    """Map a generated table back to `tokens` (the texts of the prompt's numbered tokens).

    A row is "number, form, tag" (form optional). A row's number places it; a row without a
    number must be "form tag" for one of the next untagged tokens. When a numbered row's form
    is not the numbered token but one of the next untagged ones (the model skipped or repeated
    a number), the form wins. The first row for a token counts; prose lines are ignored;
    missing or invalid tags become `repair_tag` and are counted.
    """
    n = len(tokens)
    found: List[Optional[str]] = [None] * n
    seen = [False] * n
    result = TableParse(tags=[])
    cursor = 0  # the next token a row without a usable number goes to
    for line in response.splitlines():
        if not line.strip():
            continue
        cells = _split_row(line)
        index: Optional[int] = None
        if cells and re.fullmatch(r"\d+[.)]?", cells[0]):
            index = int(re.sub(r"\D", "", cells[0])) - 1
            cells = cells[1:]
        if not cells:
            result.n_unparsed_lines += 1
            continue
        tag = normalize_tag(cells[-1])
        form = " ".join(cells[:-1]) if len(cells) >= 2 else None
        if index is None:
            # Without a number a row must be "form tag" with the form of an untagged token
            # close ahead; anything else is prose, not a row.
            position = _match_ahead(tokens, seen, cursor, form) if (form and tag) else None
            if position is None:
                result.n_unparsed_lines += 1
                continue
        else:
            position = index
            if form is not None and not (0 <= position < n and _same_form(tokens[position], form)):
                # A skipped or repeated number: the form decides when it names a nearby token.
                ahead = _match_ahead(tokens, seen, cursor, form)
                if ahead is not None:
                    position = ahead
        if not (0 <= position < n):
            result.extra_lines.append(line)
            continue
        if seen[position]:
            continue
        seen[position] = True
        found[position] = tag
        if tag is None:
            result.n_invalid += 1
        cursor = max(cursor, position + 1)
        while cursor < n and seen[cursor]:
            cursor += 1
    for position in range(n):
        if not seen[position]:
            result.n_missing += 1
    result.tags = [tag if tag is not None else repair_tag for tag in found]
    return result


def parse_pos_responses_v1(
    task: "POSTaggingTask", shards: Iterable[Iterable[Doc]], responses: Iterable[Iterable[str]]
) -> Iterable[List[TableParse]]:
    """Per doc, the parsed table of each shard's response; the part of the answer the prompt
    already held is read back with it."""
    for doc_shards, doc_responses in zip(shards, responses):
        parsed = []
        for shard, response in zip(doc_shards, doc_responses):
            forms = task.prompt_tokens(shard)
            parsed.append(parse_pos_table(task.answer_start(forms) + str(response), forms, task.repair_tag))
        yield parsed


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


class POSExample(FewshotExample[POSTaggingTask]):
    """A few-shot example: a sentence, its tokens and their UPOS tags."""

    text: str
    tokens: List[str]
    tags: List[str]

    @classmethod
    def generate(cls, example: Example, task: POSTaggingTask) -> Optional["POSExample"]:
        """From a gold doc whose every (non-whitespace) token has a UPOS tag; else None."""
        tokens = [t for t in example.reference if not t.is_space]
        if not tokens or any(t.pos_ not in UPOS_DEFINITIONS for t in tokens):
            return None
        return cls(text=example.reference.text, tokens=[t.text for t in tokens], tags=[t.pos_ for t in tokens])


def make_pos_task(
    template: str = POS_TEMPLATE_V1,
    parse_responses: Optional[TaskResponseParser[POSTaggingTask]] = None,
    examples: ExamplesConfigType = None,
    use_default_examples: bool = True,
    language: str = "Tagalog",
    max_tokens_per_prompt: int = 48,
    shard_mapper: Optional[ShardMapper] = None,
    shard_reducer: Optional[ShardReducer] = None,
    repair_tag: str = "X",
    start_answer: bool = True,
    scorer: Optional[Callable[..., Dict[str, Any]]] = None,
) -> POSTaggingTask:
    """`fillm.POSTagging.v1` (spacy-llm `llm_tasks`): UPOS tagging with a step-by-step prompt
    and a numbered token table.

    template: Jinja prompt (gets text, tokens, language, definitions, prompt_examples, answer_start).
    parse_responses: reads the responses into tables (default: `parse_pos_responses_v1`).
    examples: few-shot examples ({"text", "tokens", "tags"}), e.g. from `spacy.FewShotReader.v1`;
        replaces the two built-in Tagalog examples.
    use_default_examples: with no `examples`, use the built-in Tagalog examples (a base model
        learns the output format from them); False = zero-shot.
    language: named in the prompt.
    max_tokens_per_prompt: longer sentences are tagged in slices of this many tokens.
    shard_mapper: shards a slice whose prompt exceeds the model's context length (default:
        spacy-llm's `spacy.ShardMapper.v1`).
    shard_reducer: joins a doc's shards back into one doc (default: `reduce_shards_to_doc`).
    repair_tag: the tag given to tokens the response leaves untagged or mis-tagged (counted).
    start_answer: end the prompt with the first row up to its tag ("1<TAB>token<TAB>"), so the
        model starts tagging instead of copying the token list; the parser adds it back.
    scorer: defaults to spaCy's `pos` token-attribute scorer (`pos_acc`).
    """
    raw = list(examples()) if callable(examples) else list(examples or [])
    if not raw and use_default_examples:
        raw = DEFAULT_EXAMPLES
    prompt_examples = [POSExample(**eg) for eg in raw]
    for eg in prompt_examples:
        if len(eg.tokens) != len(eg.tags) or any(tag not in UPOS_DEFINITIONS for tag in eg.tags):
            raise ValueError(f"Few-shot example '{eg.text}' needs one UPOS tag per token")
    return POSTaggingTask(
        parse_responses=parse_responses or parse_pos_responses_v1,
        prompt_example_type=POSExample,
        template=template,
        prompt_examples=prompt_examples,
        shard_mapper=shard_mapper or make_shard_mapper(),
        shard_reducer=shard_reducer or reduce_shards_to_doc,
        language=language,
        max_tokens_per_prompt=max_tokens_per_prompt,
        repair_tag=repair_tag,
        start_answer=start_answer,
        scorer=scorer or score_pos,
    )
