"""`fillm.POSTagging.v1`: a spacy-llm task that sets `token.pos_` from a generated UPOS table.

spacy-llm 0.7 has no part-of-speech task. This one follows Matsuda et al. (2025, arXiv
2506.09983): step-by-step instructions and a simple CoNLL-U-like table, one line per token,

    1<TAB>Kumain<TAB>VERB
    2<TAB>si<TAB>DET

The prompt lists the spaCy tokens already numbered, so the answer maps back to tokens by
number, never by re-tokenizing the model's text. By default the answer is started for the
model ("1<TAB>first token<TAB>"): a small base model otherwise tends to copy the token list
again instead of tagging it; the parser reads the started row as part of the answer. The parser is lenient about form (tabs,
pipes or spaces between columns; the form column may be missing) and strict about content:
a token whose tag is missing, unreadable or not a UPOS tag is repaired to `X`, and every repair
is counted, per doc in `doc.user_data["fillm_pos"]` and in total on the task (`task.counts`).
"""
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, cast

import jinja2
import jinja2.sandbox
import srsly
from spacy import util
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc, Span
from spacy.training import Example

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
Sentence: {{ text }}
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
class POSExample:
    """A few-shot example: a sentence, its tokens and their UPOS tags."""

    text: str
    tokens: List[str]
    tags: List[str]

    @classmethod
    def from_doc(cls, doc: Doc) -> Optional["POSExample"]:
        tokens = [t for t in doc if not t.is_space]
        if not tokens or any(t.pos_ not in UPOS_DEFINITIONS for t in tokens):
            return None
        return cls(text=doc.text, tokens=[t.text for t in tokens], tags=[t.pos_ for t in tokens])

    def to_dict(self) -> Dict[str, Any]:
        return {"text": self.text, "tokens": list(self.tokens), "tags": list(self.tags)}


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


def score_pos(examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
    """spaCy's token-attribute scorer on `pos` (gold/predicted tokenizations aligned)."""
    return Scorer.score_token_attr(examples, "pos", **kwargs)


class POSTaggingTask:
    """Generates one prompt per shard (a sentence, or a slice of at most `max_tokens_per_prompt`
    tokens) and sets `token.pos_` on the original doc from the parsed tables."""

    def __init__(
        self,
        *,
        template: str = POS_TEMPLATE_V1,
        language: str = "Tagalog",
        prompt_examples: Optional[List[POSExample]] = None,
        definitions: Optional[Dict[str, str]] = None,
        max_tokens_per_prompt: int = 48,
        repair_tag: str = "X",
        start_answer: bool = True,
        scorer: Optional[Callable[..., Dict[str, Any]]] = None,
    ):
        if repair_tag not in UPOS_DEFINITIONS:
            raise ValueError(f"repair_tag must be a UPOS tag, not '{repair_tag}'")
        if max_tokens_per_prompt < 1:
            raise ValueError("max_tokens_per_prompt must be at least 1")
        self._template = template
        self.language = language
        self._prompt_examples = list(prompt_examples or [])
        self.definitions = dict(definitions or UPOS_DEFINITIONS)
        self.max_tokens_per_prompt = max_tokens_per_prompt
        self.repair_tag = repair_tag
        self.start_answer = start_answer
        self._scorer = scorer or score_pos
        self.counts = {"tokens": 0, "repaired": 0, "missing": 0, "invalid": 0, "responses": 0}

    @property
    def prompt_template(self) -> str:
        return self._template

    @property
    def prompt_examples(self) -> List[POSExample]:
        return self._prompt_examples

    def shards(self, doc: Doc) -> List[Span]:
        """Sentences if the doc has them, else the doc; each cut to `max_tokens_per_prompt`."""
        pieces = list(doc.sents) if doc.has_annotation("SENT_START") else [doc[:]]
        shards: List[Span] = []
        for piece in pieces:
            for start in range(piece.start, piece.end, self.max_tokens_per_prompt):
                shards.append(doc[start : min(start + self.max_tokens_per_prompt, piece.end)])
        return shards

    @staticmethod
    def prompt_tokens(shard: Span) -> List[str]:
        """Tokens the model is asked about: whitespace tokens have no UD tag and are left out."""
        return [t.text for t in shard if not t.is_space]

    def answer_start(self, tokens: Sequence[str]) -> str:
        """The part of the answer the prompt already contains (the first row up to its tag)."""
        return f"1\t{tokens[0]}\t" if self.start_answer and tokens else ""

    def render(self, text: str, tokens: Sequence[str]) -> str:
        environment = jinja2.sandbox.SandboxedEnvironment(keep_trailing_newline=True)
        return environment.from_string(self._template).render(
            text=text,
            tokens=list(tokens),
            language=self.language,
            definitions=self.definitions,
            prompt_examples=self._prompt_examples,
            answer_start=self.answer_start(tokens),
        )

    def generate_prompts(
        self, docs: Iterable[Doc], context_length: Optional[int] = None
    ) -> Iterable[Tuple[Iterable[str], Iterable[Span]]]:
        """Per doc: (prompts, shards), one prompt per shard; a doc with no tokens has one empty shard."""
        for doc in docs:
            shards = self.shards(doc) if len(doc) else [doc[:]]
            yield [self.render(shard.text, self.prompt_tokens(shard)) for shard in shards], shards

    def parse_responses(
        self, shards: Iterable[Iterable[Span]], responses: Iterable[Iterable[str]]
    ) -> Iterable[Doc]:
        """Set `pos_` on every token of each doc; record what had to be repaired."""
        for doc_shards, doc_responses in zip(shards, responses):
            doc_shards, doc_responses = list(doc_shards), list(doc_responses)
            doc = doc_shards[0].doc
            stats = {"tokens": 0, "repaired": 0, "missing": 0, "invalid": 0}
            for shard, response in zip(doc_shards, doc_responses):
                asked = [t for t in shard if not t.is_space]
                forms = [t.text for t in asked]
                parsed = parse_pos_table(self.answer_start(forms) + str(response), forms, self.repair_tag)
                for token, tag in zip(asked, parsed.tags):
                    token.pos_ = tag
                for token in shard:
                    if token.is_space:
                        token.pos_ = "X"  # no UD tag for whitespace; not asked, so not a repair
                stats["tokens"] += len(asked)
                stats["repaired"] += parsed.n_repaired
                stats["missing"] += parsed.n_missing
                stats["invalid"] += parsed.n_invalid
            doc.user_data[USER_DATA_KEY] = stats
            for key, value in stats.items():
                self.counts[key] += value
            self.counts["responses"] += len(doc_responses)
            yield doc

    def scorer(self, examples: Iterable[Example]) -> Dict[str, Any]:
        return self._scorer(examples)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        nlp: Language,
        n_prompt_examples: int = 0,
    ) -> None:
        """Take up to `n_prompt_examples` few-shot examples (-1: all) from the gold examples,
        in place of the current ones."""
        if n_prompt_examples == 0:
            return
        examples: List[POSExample] = []
        for eg in get_examples():
            if 0 <= n_prompt_examples <= len(examples):
                break
            example = POSExample.from_doc(eg.reference)
            if example is not None:
                examples.append(example)
        self._prompt_examples = examples

    # Serialization: the configuration comes from the config; examples chosen at initialize travel.
    def _state(self) -> Dict[str, Any]:
        return {"prompt_examples": [eg.to_dict() for eg in self._prompt_examples]}

    def _set_state(self, state: Dict[str, Any]) -> None:
        self._prompt_examples = [POSExample(**eg) for eg in state.get("prompt_examples", [])]

    def to_bytes(self, *, exclude: Tuple[str] = cast(Tuple[str], tuple())) -> bytes:
        return srsly.msgpack_dumps(self._state())

    def from_bytes(self, bytes_data: bytes, *, exclude: Tuple[str] = cast(Tuple[str], tuple())) -> "POSTaggingTask":
        self._set_state(srsly.msgpack_loads(bytes_data))
        return self

    def to_disk(self, path, *, exclude: Tuple[str] = cast(Tuple[str], tuple())) -> None:
        path = util.ensure_path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "task.json", self._state())

    def from_disk(self, path, *, exclude: Tuple[str] = cast(Tuple[str], tuple())) -> "POSTaggingTask":
        path = util.ensure_path(path)
        if (path / "task.json").exists():
            self._set_state(srsly.read_json(path / "task.json"))
        return self


def make_pos_task(
    template: str = POS_TEMPLATE_V1,
    language: str = "Tagalog",
    examples: Optional[Callable[[], Iterable[Dict[str, Any]]]] = None,
    use_default_examples: bool = True,
    max_tokens_per_prompt: int = 48,
    repair_tag: str = "X",
    start_answer: bool = True,
    scorer: Optional[Callable[..., Dict[str, Any]]] = None,
) -> POSTaggingTask:
    """`fillm.POSTagging.v1` (spacy-llm `llm_tasks`): UPOS tagging with a step-by-step prompt
    and a numbered token table.

    template: Jinja prompt (gets text, tokens, language, definitions, prompt_examples).
    language: named in the prompt.
    examples: few-shot examples ({"text", "tokens", "tags"}), e.g. from `spacy.FewShotReader.v1`;
        replaces the two built-in Tagalog examples.
    use_default_examples: with no `examples`, use the built-in Tagalog examples (a base model
        learns the output format from them); False = zero-shot.
    max_tokens_per_prompt: longer sentences are tagged in slices of this many tokens.
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
        template=template,
        language=language,
        prompt_examples=prompt_examples,
        max_tokens_per_prompt=max_tokens_per_prompt,
        repair_tag=repair_tag,
        start_answer=start_answer,
        scorer=scorer,
    )
