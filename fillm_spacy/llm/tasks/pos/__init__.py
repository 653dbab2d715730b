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

from .parser import TableParse, normalize_tag, parse_pos_responses_v1, parse_pos_table
from .registry import make_pos_task
from .task import POS_TEMPLATE_V1, POSTaggingTask, reduce_shards_to_doc, score_pos, token_slices
from .util import DEFAULT_EXAMPLES, TAG_ALIASES, UPOS_DEFINITIONS, UPOS_TAGS, USER_DATA_KEY, POSExample

__all__ = [
    "DEFAULT_EXAMPLES",
    "POS_TEMPLATE_V1",
    "TAG_ALIASES",
    "UPOS_DEFINITIONS",
    "UPOS_TAGS",
    "USER_DATA_KEY",
    "POSExample",
    "POSTaggingTask",
    "TableParse",
    "make_pos_task",
    "normalize_tag",
    "parse_pos_responses_v1",
    "parse_pos_table",
    "reduce_shards_to_doc",
    "score_pos",
    "token_slices",
]
