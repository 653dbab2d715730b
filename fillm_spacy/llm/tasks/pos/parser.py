"""Reading a generated UPOS table back onto the prompt's tokens: lenient about form, strict
about content (see the package docstring)."""

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, List, Optional, Sequence

from spacy.tokens import Doc

from .util import TAG_ALIASES, UPOS_DEFINITIONS

if TYPE_CHECKING:
    from .task import POSTaggingTask


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
