"""Generative LoRA fine-tuning (the FiLLM paper's method), as a baseline for the encoder path.

    python -m fillm_spacy.llm.finetune train --task pos --model gemma3-270m \
        --train assets/ud/train.conllu --dev assets/ud/dev.conllu --output adapters/llm_pos --max-steps 300
    python -m fillm_spacy.llm.finetune evaluate --adapter adapters/llm_pos --test corpus/test.spacy \
        --output metrics/llm_pos.json

Instruction pairs are made with the very task that runs at inference: the prompt is what the
`llm` pipe would send for the gold sentence (formatted by `fillm.LocalLLM.v1` for the model's chat
format), the answer is what that task's parser reads back:
- `pos`: UD data (CoNLL-U, or a DocBin with `pos`) → `fillm.POSTagging.v1`'s numbered UPOS table;
- `ner`: a DocBin with entities → `spacy.NER.v3`'s "n. text | True | LABEL | reason" lines;
- `headline`: {"text","summary"} JSONL → `fillm_summarizer`'s abstractive prompt (`headline.py`,
  shared with the summarizer) and the headline.
The loss is the causal LM loss on the answer pieces (and the closing <eos>) only. The adapter is
saved as a peft adapter directory (adapter_config.json + adapter_model.safetensors) plus
`fillm-adapter.json`: the base model's fingerprint and the task configuration, so evaluation (and
any pipeline using the adapter) prompts exactly as in training.
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..readers.records import read_docs, read_jsonl, select_range

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


# ----------------------------------------------------------------------------- data


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


def batches(encoded: List[Tuple[List[int], List[int]]], batch_size: int, pad_id: int, rng: random.Random):
    """Endless shuffled batches, right-padded (training needs no generation alignment)."""
    order = list(range(len(encoded)))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            rows = [encoded[i] for i in order[start : start + batch_size]]
            yield collate(rows, pad_id)


def collate(rows, pad_id: int):
    """(input ids, attention mask, labels) tensors, right-padded."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, labs) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, : len(labs)] = torch.tensor(labs)
        mask[r, : len(ids)] = 1
    return input_ids, mask, labels


# ----------------------------------------------------------------------------- train


def answer_loss_sum(llm, input_ids, mask, labels):
    """(summed loss, number of answer pieces). The LM head runs only where a label is set: a
    full (batch x length x 262k-vocabulary) logits tensor would not fit a laptop."""
    import torch

    device = next(llm.model.parameters()).device
    input_ids, mask, labels = input_ids.to(device), mask.to(device), labels.to(device)
    hidden = llm.decoder(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = llm.model.get_output_embeddings()(hidden[:, :-1][keep])
    cap = getattr(llm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return loss, int(keep.sum())


def answer_loss(llm, adapter_name: str, rows, pad_id: int, batch_size: int) -> float:
    """Mean answer-piece loss over `rows` (no gradient)."""
    import torch

    from ..models.adapters import active_adapter

    total, count = 0.0, 0
    with active_adapter(llm, adapter_name), torch.no_grad():
        llm.model.eval()
        for start in range(0, len(rows), batch_size):
            loss, n = answer_loss_sum(llm, *collate(rows[start : start + batch_size], pad_id))
            total += float(loss)
            count += n
    return total / max(count, 1)


def train(args: argparse.Namespace) -> Dict[str, Any]:
    import torch
    from safetensors.torch import save_file

    from ..models.adapters import active_adapter, adapter_parameters, add_lora_adapter, new_adapter_name, set_trainable
    from ..models.loading import load_base_llm
    from .local_model import ADAPTER_INFO_FILE, fillm_local_llm_v1

    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    task_config = dict(DEFAULT_TASK_CONFIG[args.task])
    if args.task == "ner" and args.labels:
        task_config["labels"] = args.labels.split(",")
    llm = load_base_llm(args.model, device=args.device, dtype=args.dtype)
    # Encodes the prompts as the llm pipe will (the same loaded model as `llm`); never generates.
    generator = fillm_local_llm_v1(
        args.model,
        chat_format=args.chat_format,
        context_length=args.max_length + 1,
        max_new_tokens=1,
        device=args.device,
        dtype=args.dtype,
    )

    headline_prompt = None
    # The abstractive fillm_summarizer settings the prompts are made with (kept with the adapter,
    # so the summarizer can warn when it is run otherwise).
    summarizer_config: Dict[str, Any] = {}
    if args.task == "headline":
        import spacy

        from .headline import DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT

        summarizer_config = {
            "mode": "abstractive",
            "model_name": args.model,
            "max_input_pieces": args.max_input_pieces,
            "prompt": DEFAULT_PROMPT,
            "chat_format": args.chat_format,
            "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
            "device": args.device,
            "dtype": args.dtype,
        }
        # The generator's tokenizer is the shared base model's, the one the summarizer would use.
        headline_prompt = headline_prompts(spacy.blank(args.lang), generator.llm.tokenizer, args.max_input_pieces)

    def load_records(path: Path, range_: Optional[str]) -> List[Any]:
        records = read_jsonl(path) if args.task == "headline" else read_docs(path, args.lang)
        return select_range(records, range_, args.limit)

    train_records = load_records(Path(args.train), args.train_range)
    train_pairs = instruction_pairs(args.task, task_config, train_records, headline_prompt)
    encoded = [e for e in (encode_pair(generator, args.task, p, a, args.max_length) for p, a in train_pairs) if e]
    if not encoded:
        raise SystemExit(f"No training pair fits --max-length {args.max_length} (from {len(train_pairs)} pairs)")
    dev_encoded: List[Tuple[List[int], List[int]]] = []
    if args.dev:
        dev_records = load_records(Path(args.dev), args.dev_range)
        dev_pairs = instruction_pairs(args.task, task_config, dev_records, headline_prompt)
        dev_encoded = [e for e in (encode_pair(generator, args.task, p, a, args.max_length) for p, a in dev_pairs) if e]
    print(
        f"[finetune] {args.task}: {len(encoded)} training pairs ({len(train_pairs) - len(encoded)} over "
        f"--max-length {args.max_length} left out), {len(dev_encoded)} dev pairs",
        file=sys.stderr,
    )

    adapter_name = new_adapter_name(f"finetune-{args.task}")
    add_lora_adapter(
        llm,
        adapter_name,
        r=args.lora_r,
        alpha=args.lora_alpha,
        dropout=args.lora_dropout,
        target_modules=args.target_modules.split(","),
    )
    params = [p for _, p in adapter_parameters(llm, adapter_name)]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    warmup = max(1, int(args.max_steps * args.warmup))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (args.max_steps - step) / max(1, args.max_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    pad_id = llm.tokenizer.pad_token_id if llm.tokenizer.pad_token_id is not None else llm.tokenizer.eos_token_id
    stream = batches(encoded, args.batch_size, pad_id, rng)
    history = []
    dev_before = answer_loss(llm, adapter_name, dev_encoded, pad_id, args.batch_size) if dev_encoded else None
    started = time.time()
    with active_adapter(llm, adapter_name):
        for step in range(args.max_steps):
            llm.model.train()
            optimizer.zero_grad()
            micro = [next(stream) for _ in range(args.grad_accum)]
            n_answer = sum(int((labels[:, 1:] != -100).sum()) for _, _, labels in micro)
            step_loss = 0.0
            for input_ids, mask, labels in micro:
                # Mean over every answer piece of the step, however the pieces fall into micro-batches.
                loss_sum, _ = answer_loss_sum(llm, input_ids, mask, labels)
                (loss_sum / max(n_answer, 1)).backward()
                step_loss += float(loss_sum.detach()) / max(n_answer, 1)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            history.append(step_loss)
            if (step + 1) % args.log_every == 0 or step + 1 == args.max_steps:
                print(
                    f"[finetune] step {step + 1}/{args.max_steps} loss {step_loss:.4f} ({time.time() - started:.0f}s)",
                    file=sys.stderr,
                )
    llm.model.eval()
    dev_after = answer_loss(llm, adapter_name, dev_encoded, pad_id, args.batch_size) if dev_encoded else None
    # Training is over: this adapter no longer trains.
    set_trainable(llm, adapter_name, False)

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(llm.peft_model, adapter_name=adapter_name)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(output / "adapter_model.safetensors"))
    llm.peft_model.peft_config[adapter_name].save_pretrained(str(output))
    report = {
        "task": args.task,
        "base": args.model,
        "steps": args.max_steps,
        "train_pairs": len(encoded),
        "dev_pairs": len(dev_encoded),
        "train_loss_first": history[0] if history else None,
        "train_loss_last": history[-1] if history else None,
        "dev_answer_loss_before": dev_before,
        "dev_answer_loss_after": dev_after,
        "seconds": round(time.time() - started, 1),
        "args": {k: v for k, v in vars(args).items() if k != "func"},
    }
    info = {
        "base_fingerprint": llm.fingerprint,
        "task": args.task,
        "task_config": task_config,
        "summarizer_config": summarizer_config,
        "chat_format": generator.chat_format,
        "training": report,
    }
    (output / ADAPTER_INFO_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return report


# ----------------------------------------------------------------------------- evaluate


def model_chat_format(info: Dict[str, Any], args: argparse.Namespace) -> str:
    """The chat format the evaluated model will use ("auto" resolved)."""
    from ..models.loading import load_base_llm
    from .local_model import resolve_chat_format

    if info.get("chat_format"):
        return info["chat_format"]
    base = args.model or info.get("training", {}).get("base") or "gemma3-270m"
    return resolve_chat_format(args.chat_format, load_base_llm(base, device=args.device, dtype=args.dtype))


def evaluate(args: argparse.Namespace) -> Dict[str, Any]:
    """Run an `llm` pipe (this adapter, or the base model few-shot) on the test docs and score it
    with spaCy's scorers: pos_acc for `pos`, ents_p/r/f for `ner`."""
    import spacy
    from spacy.scorer import Scorer
    from spacy.training import Example

    from .local_model import ADAPTER_INFO_FILE

    info: Dict[str, Any] = {}
    if args.adapter:
        info = json.loads((Path(args.adapter) / ADAPTER_INFO_FILE).read_text())
    task = args.task or info.get("task")
    if task not in ("pos", "ner"):
        raise SystemExit(
            "evaluate needs --task pos|ner (or an adapter trained for one); "
            "headline adapters are scored with python -m fillm_spacy.evaluation.rouge"
        )
    if info:
        task_config = dict(info["task_config"])
    else:
        # The base model without an adapter gets the task's few-shot defaults.
        task_config = {"@llm_tasks": "fillm.POSTagging.v1"} if task == "pos" else dict(DEFAULT_TASK_CONFIG["ner"])
    if task == "ner" and args.labels:
        task_config["labels"] = args.labels.split(",")
    if task == "pos" and args.max_tokens_per_prompt:
        task_config["max_tokens_per_prompt"] = args.max_tokens_per_prompt
    base = args.model or info.get("training", {}).get("base") or "gemma3-270m"
    max_new_tokens = args.max_new_tokens or (512 if task == "pos" else 256)
    context_length = args.context_length
    if context_length is None and info:
        # Prompts as long as the training pairs, plus room for the answer.
        context_length = int(info["training"]["args"]["max_length"]) + max_new_tokens
    # spacy.NER.v3's prompt is a run of "Paragraph: ... Answer: ..." blocks; a base model that has
    # answered (or has nothing to answer) goes on with a made-up next block.
    stop = ["\n\n", "Paragraph:"] if task == "ner" and model_chat_format(info, args) == "plain" else None
    model_config = {
        "@llm_models": "fillm.LocalLLM.v1",
        "stop": stop,
        "name": base,
        "adapter": str(args.adapter) if args.adapter else None,
        "max_new_tokens": max_new_tokens,
        "context_length": context_length,
        "batch_size": args.batch_size,
        "chat_format": info.get("chat_format", args.chat_format),
        "device": args.device,
        "dtype": args.dtype,
    }
    nlp = spacy.blank(args.lang)
    nlp.add_pipe(
        "llm",
        name=f"llm_{task}",
        config={"task": task_config, "model": model_config, "save_io": bool(args.save_responses)},
    )
    if args.shots:
        # Few-shot examples from gold docs (outside the test range), through the task's own
        # initialize: spacy.NER.v3 renders them in its chain-of-thought format.
        shot_docs = select_range(read_docs(Path(args.shots), args.lang), args.shots_range, args.n_shots)
        shots = [Example(doc.copy(), doc) for doc in shot_docs]
        nlp.get_pipe(f"llm_{task}").initialize(get_examples=lambda: shots, nlp=nlp, n_prompt_examples=len(shots))
    references = select_range(read_docs(Path(args.test), args.lang), args.range, args.limit)
    examples = [Example(nlp.make_doc(ref.text), ref) for ref in references]
    started = time.time()
    # What nlp.evaluate does, keeping the processed docs (it scores copies) for --save-responses.
    for eg, doc in zip(examples, nlp.pipe([eg.predicted for eg in examples], batch_size=args.batch_size)):
        eg.predicted = doc
    seconds = time.time() - started
    scores = Scorer(nlp).score(examples)
    pipe = nlp.get_pipe(f"llm_{task}")
    keys = ["pos_acc"] if task == "pos" else ["ents_p", "ents_r", "ents_f", "ents_per_type"]
    result: Dict[str, Any] = {
        "task": task,
        "base": base,
        "adapter": str(args.adapter) if args.adapter else None,
        "test": str(args.test),
        "lang": args.lang,
        "range": args.range,
        "limit": args.limit,
        "predictions": str(args.predictions) if args.predictions else None,
        "n_docs": len(examples),
        "n_tokens": sum(len(eg.reference) for eg in examples),
        **{key: scores.get(key) for key in keys},
        "seconds": round(seconds, 1),
        "truncated_prompts": pipe._model.n_truncated_prompts,
        "model_config": model_config,
        "task_config": task_config,
        "shots": {"file": args.shots, "range": args.shots_range, "n": args.n_shots} if args.shots else None,
    }
    if task == "pos":
        result["repairs"] = dict(pipe.task.counts)
        result["repaired_fraction"] = pipe.task.counts["repaired"] / max(1, pipe.task.counts["tokens"])
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    if args.predictions:
        from spacy.tokens import DocBin

        # The predicted docs, in test order: `compare report --generative` pairs them with the
        # head-based pipelines' predictions on the same docs for its significance tests.
        Path(args.predictions).parent.mkdir(parents=True, exist_ok=True)
        DocBin(docs=[eg.predicted for eg in examples], store_user_data=False).to_disk(args.predictions)
    if args.save_responses:
        import srsly

        # Evaluation leaves each processed doc on its example.
        rows = [
            {"text": eg.predicted.text, "responses": eg.predicted.user_data["llm_io"][f"llm_{task}"]["response"]}
            for eg in examples
        ]
        srsly.write_jsonl(args.save_responses, rows)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return result


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fillm_spacy.llm.finetune", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    tr = commands.add_parser("train", help="LoRA fine-tune the base LLM on instruction pairs")
    tr.add_argument("--task", choices=TASKS, required=True)
    tr.add_argument(
        "--model",
        "--base",
        dest="model",
        default="gemma3-270m",
        help="base model: alias, local HF dir, or cached hub name (--base: the former name)",
    )
    tr.add_argument("--train", required=True, help="pos: .conllu or .spacy; ner: .spacy; headline: .jsonl")
    tr.add_argument("--dev", help="held-out file of the same kind (answer loss before/after)")
    tr.add_argument("--train-range", help="START:END slice of the training records (e.g. 0:52)")
    tr.add_argument("--dev-range", help="START:END slice of the dev records")
    tr.add_argument("--limit", type=int, help="at most this many records per file")
    tr.add_argument("--output", required=True, help="adapter directory to write")
    tr.add_argument("--max-steps", type=int, default=200)
    tr.add_argument("--lr", type=float, default=2e-4)
    tr.add_argument("--warmup", type=float, default=0.05, help="fraction of steps with linear warm-up")
    tr.add_argument("--batch-size", type=int, default=2)
    tr.add_argument("--grad-accum", type=int, default=1)
    tr.add_argument("--max-length", type=int, default=1024, help="pairs longer than this (pieces) are left out")
    tr.add_argument("--max-input-pieces", type=int, default=768, help="headline: article pieces in the prompt")
    tr.add_argument("--lora-r", type=int, default=16)
    tr.add_argument("--lora-alpha", type=float, default=32.0)
    tr.add_argument("--lora-dropout", type=float, default=0.05)
    tr.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj")
    tr.add_argument("--labels", help="ner: comma-separated labels (default PER,ORG,LOC)")
    tr.add_argument("--chat-format", default="auto", choices=("auto", "plain", "seallm", "tokenizer"))
    tr.add_argument("--lang", default="tl")
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--dtype", default="float32")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--log-every", type=int, default=10)
    tr.set_defaults(func=train)

    ev = commands.add_parser("evaluate", help="score an llm pipe (with an adapter) on a test file")
    ev.add_argument("--task", choices=("pos", "ner"), help="default: the adapter's task")
    ev.add_argument(
        "--model",
        "--base",
        dest="model",
        help="base model (default: the one the adapter was trained on; --base: the former name)",
    )
    ev.add_argument("--adapter", help="adapter directory from `train`; omit to score the base model few-shot")
    ev.add_argument("--test", required=True, help=".spacy DocBin or .conllu")
    ev.add_argument("--range", help="START:END slice of the test docs")
    ev.add_argument("--limit", type=int)
    ev.add_argument("--output", help="JSON file to write, e.g. metrics/llm_pos.json")
    ev.add_argument("--predictions", help=".spacy DocBin for the predicted docs (for compare report --generative)")
    ev.add_argument("--save-responses", help="JSONL file for each doc's text and raw model responses")
    ev.add_argument(
        "--shots", help="gold file (.spacy/.conllu) to take few-shot examples from (replacing the defaults)"
    )
    ev.add_argument("--shots-range", help="START:END slice of --shots (keep it apart from the test docs)")
    ev.add_argument("--n-shots", type=int, default=3)
    ev.add_argument("--max-new-tokens", type=int)
    ev.add_argument("--max-tokens-per-prompt", type=int, help="pos: tokens per prompt")
    ev.add_argument(
        "--context-length",
        type=int,
        help="prompt + answer pieces (default: the adapter's training --max-length + answer)",
    )
    ev.add_argument("--batch-size", type=int, default=4)
    ev.add_argument("--labels", help="ner: comma-separated labels")
    ev.add_argument("--chat-format", default="auto", choices=("auto", "plain", "seallm", "tokenizer"))
    ev.add_argument("--lang", default="tl")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--dtype", default="float32")
    ev.set_defaults(func=evaluate)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    main()
