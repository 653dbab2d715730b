"""Instruction pairs for generative fine-tuning, made with the very task that runs at inference,
and the loss on their answers.

The prompt is what the `llm` pipe would send for the gold sentence (formatted by
`fillm.LocalLLM.v1` for the model's chat format), the answer is what that task's parser reads back:
- `pos`: UD data (CoNLL-U, or a DocBin with `pos`) → `fillm.POSTagging.v1`'s numbered UPOS table;
- `ner`: a DocBin with entities → `spacy.NER.v3`'s "n. text | True | LABEL | reason" lines;
- `headline`: {"text","summary"} JSONL → `fillm_summarizer`'s abstractive prompt (`headline.py`,
  shared with the summarizer) and the headline.
The loss is the causal LM loss on the answer pieces (and the closing <eos>) only.
"""

import random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

TASKS = ("pos", "ner", "headline")
DEFAULT_NER_LABELS = ["PER", "ORG", "LOC"]
# Fine-tuned prompts leave out few-shot examples: the adapter learns the format, and every
# prompt piece costs training and generation time.
DEFAULT_TASK_CONFIG = {
    "pos": {"@llm_tasks": "fillm.POSTagging.v1", "use_default_examples": False, "start_answer": True},
    "ner": {"@llm_tasks": "spacy.NER.v3", "labels": DEFAULT_NER_LABELS},
    "headline": {},
}
# What follows a plain-text prompt before the answer, as the model would continue it.
PLAIN_ANSWER_PREFIX = {"pos": "", "ner": "\n", "headline": " "}


def make_task(task: str, task_config: Dict[str, Any]):
    """The spacy-llm task object a pipeline with this task config would hold."""
    import spacy_llm  # noqa: F401  (creates the llm_* registries)
    from spacy.util import registry

    return registry.resolve({"task": task_config})["task"]


def ner_answer(doc) -> str:
    """Entities as spacy.NER.v3's chain-of-thought parser reads them, in text order."""
    from spacy_llm.tasks.span.examples import SpanReason

    lines = []
    for i, ent in enumerate(doc.ents, start=1):
        reason = SpanReason(text=ent.text, is_entity=True, label=ent.label_, reason=f"is a {ent.label_}")
        lines.append(f"{i}. {reason.to_str()}")
    return "\n".join(lines)


def pos_answer(shard) -> str:
    """The UPOS table fillm.POSTagging.v1's parser reads: number, token, tag."""
    from .tasks.pos import UPOS_DEFINITIONS

    rows = []
    for i, token in enumerate([t for t in shard if not t.is_space], start=1):
        tag = token.pos_ if token.pos_ in UPOS_DEFINITIONS else "X"
        rows.append(f"{i}\t{token.text}\t{tag}")
    return "\n".join(rows)


def headline_prompts(nlp, tokenizer, max_input_pieces: int) -> Callable[[str], str]:
    """A text's headline prompt, as an abstractive `fillm_summarizer` with this `max_input_pieces`
    (and its other defaults) builds it for the same base model's tokenizer."""
    from .headline import build_prompt

    if max_input_pieces < 1:
        raise ValueError("--max-input-pieces must be at least 1")

    def headline_prompt(text: str) -> str:
        return build_prompt(nlp.make_doc(text), tokenizer, max_input_pieces=max_input_pieces)

    return headline_prompt


def instruction_pairs(
    task: str,
    task_config: Dict[str, Any],
    records: Sequence[Any],
    headline_prompt: Optional[Callable[[str], str]] = None,
) -> List[Tuple[str, str]]:
    """(prompt, answer) pairs; prompts are unformatted (the model wrapper adds chat turns).
    headline_prompt: for task "headline", a text's prompt (see `headline_prompts`)."""
    pairs: List[Tuple[str, str]] = []
    if task == "headline":
        for record in records:
            # spaCy's tokenizer keeps the text as it is: a doc's text is the record's.
            if record["text"].strip() and record.get("summary", "").strip():
                pairs.append((headline_prompt(record["text"]), record["summary"].strip()))
        return pairs
    llm_task = make_task(task, task_config)
    for doc in records:
        if task == "pos":
            prompts, shards = next(iter(llm_task.generate_prompts([doc])))
            for prompt, shard in zip(prompts, shards):
                if len(shard):
                    # The prompt already holds the start of the answer; the model learns the rest.
                    started = llm_task.answer_start(llm_task.prompt_tokens(shard))
                    answer = pos_answer(shard)
                    assert answer.startswith(started)
                    pairs.append((prompt, answer[len(started) :]))
        else:
            prompts, shards = next(iter(llm_task.generate_prompts([doc])))
            pairs.append((next(iter(prompts)), ner_answer(doc)))
    return pairs


def encode_pair(
    generator, task: str, prompt: str, answer: str, max_length: int
) -> Optional[Tuple[List[int], List[int]]]:
    """(input ids, labels): the prompt as the model wrapper encodes it, then the answer and <eos>;
    prompt positions are masked out of the loss (-100). None if it does not fit `max_length`."""
    tokenizer = generator.llm.tokenizer
    prompt_ids = generator.encode_prompt(prompt)
    prefix = PLAIN_ANSWER_PREFIX[task] if generator.chat_format == "plain" else ""
    answer_ids = tokenizer(prefix + answer, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    ids = prompt_ids + answer_ids
    if len(ids) > max_length:
        return None
    return ids, [-100] * len(prompt_ids) + answer_ids


def batches(encoded: List[Tuple[List[int], List[int]]], batch_size: int, tokenizer, rng: random.Random):
    """Endless shuffled batches, right-padded (training needs no generation alignment)."""
    order = list(range(len(encoded)))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            rows = [encoded[i] for i in order[start : start + batch_size]]
            yield collate(rows, tokenizer)


def collate(rows, tokenizer):
    """(input ids, attention mask, labels) tensors, right-padded: the ids by the tokenizer's own
    `pad`, the labels with -100 (training needs no generation alignment)."""
    import torch

    if tokenizer.pad_token_id is None:
        raise ValueError("The base model's tokenizer has no pad token: set one before fine-tuning.")
    batch = tokenizer.pad({"input_ids": [ids for ids, _ in rows]}, padding_side="right", return_tensors="pt")
    labels = torch.nn.utils.rnn.pad_sequence(
        [torch.as_tensor(labels) for _, labels in rows], batch_first=True, padding_value=-100
    )
    return batch["input_ids"], batch["attention_mask"], labels


def answer_loss_sum(llm, input_ids, mask, labels):
    """(summed loss, number of answer pieces). The LM head runs only where a label is set: a
    full (batch x length x 262k-vocabulary) logits tensor would not fit a laptop."""
    import torch

    device = next(llm.model.parameters()).device
    input_ids, mask, labels = input_ids.to(device), mask.to(device), labels.to(device)
    hidden = llm.decoder(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = llm.capped_logits(llm.model.get_output_embeddings()(hidden[:, :-1][keep]))
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return loss, int(keep.sum())


def answer_loss(llm, adapter_name: str, rows, batch_size: int) -> float:
    """Mean answer-piece loss over `rows` (no gradient)."""
    import torch

    from ..models.adapters import active_adapter

    total, count = 0.0, 0
    with active_adapter(llm, adapter_name), torch.no_grad():
        llm.model.eval()
        for start in range(0, len(rows), batch_size):
            loss, n = answer_loss_sum(llm, *collate(rows[start : start + batch_size], llm.tokenizer))
            total += float(loss)
            count += n
    return total / max(count, 1)
