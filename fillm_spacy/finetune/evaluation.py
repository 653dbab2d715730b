"""Scoring an `llm` pipe (a fine-tuned adapter, or the base model few-shot) on test docs."""

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict

from ..console import fail
from ..llm.instructions import DEFAULT_TASK_CONFIG
from ..readers.records import read_docs, select_range


def model_chat_format(info: Dict[str, Any], args: SimpleNamespace) -> str:
    """The chat format the evaluated model will use ("auto" resolved)."""
    from ..llm.local_model import resolve_chat_format
    from ..models.loading import load_base_llm

    if info.get("chat_format"):
        return info["chat_format"]
    base = args.model or info.get("training", {}).get("base") or "gemma3-270m"
    return resolve_chat_format(args.chat_format, load_base_llm(base, device=args.device, dtype=args.dtype))


def evaluate(args: SimpleNamespace) -> Dict[str, Any]:
    """Run an `llm` pipe (this adapter, or the base model few-shot) on the test docs and score it
    with spaCy's scorers: pos_acc for `pos`, ents_p/r/f for `ner`."""
    import spacy
    from spacy.scorer import Scorer
    from spacy.training import Example

    from ..llm.local_model import ADAPTER_INFO_FILE

    info: Dict[str, Any] = {}
    if args.adapter:
        info = json.loads((Path(args.adapter) / ADAPTER_INFO_FILE).read_text())
    task = args.task or info.get("task")
    if task not in ("pos", "ner"):
        fail(
            "evaluate needs --task pos|ner (or an adapter trained for one); "
            "headline adapters are scored with python -m fillm_spacy.evaluation.rouge",
            code=1,
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
        "model_name": base,
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
