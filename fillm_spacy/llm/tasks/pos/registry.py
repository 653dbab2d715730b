"""`fillm.POSTagging.v1`, registered in spacy-llm's `llm_tasks` through an entry point."""

from typing import Any, Callable, Dict, Optional

from spacy_llm.tasks.util.sharding import make_shard_mapper
from spacy_llm.ty import ExamplesConfigType, ShardMapper, ShardReducer, TaskResponseParser

from .parser import parse_pos_responses_v1
from .task import POS_TEMPLATE_V1, POSTaggingTask, reduce_shards_to_doc, score_pos
from .util import DEFAULT_EXAMPLES, UPOS_DEFINITIONS, POSExample


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
