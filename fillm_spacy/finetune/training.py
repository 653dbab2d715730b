"""Training a generative LoRA adapter on instruction pairs (see the package docstring)."""

import json
import logging
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

from ..console import fail
from ..llm.instructions import (
    DEFAULT_TASK_CONFIG,
    answer_loss,
    answer_loss_sum,
    batches,
    encode_pair,
    headline_prompts,
    instruction_pairs,
)
from ..readers.records import read_docs, read_jsonl, select_range

log = logging.getLogger("fillm_spacy.finetune")


def train(args: SimpleNamespace) -> Dict[str, Any]:
    import torch
    from safetensors.torch import save_file
    from transformers import get_linear_schedule_with_warmup

    from ..llm.local_model import ADAPTER_INFO_FILE, fillm_local_llm_v1
    from ..models.adapters import (
        LoraSettings,
        active_adapter,
        adapter_parameters,
        add_lora_adapter,
        new_adapter_name,
        set_trainable,
    )
    from ..models.loading import load_base_llm

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

        from ..llm.headline import DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT

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
        fail(f"No training pair fits --max-length {args.max_length} (from {len(train_pairs)} pairs)", code=1)
    dev_encoded: List[Tuple[List[int], List[int]]] = []
    if args.dev:
        dev_records = load_records(Path(args.dev), args.dev_range)
        dev_pairs = instruction_pairs(args.task, task_config, dev_records, headline_prompt)
        dev_encoded = [e for e in (encode_pair(generator, args.task, p, a, args.max_length) for p, a in dev_pairs) if e]
    log.info(
        f"{args.task}: {len(encoded)} training pairs ({len(train_pairs) - len(encoded)} over "
        f"--max-length {args.max_length} left out), {len(dev_encoded)} dev pairs"
    )

    adapter_name = new_adapter_name(f"finetune-{args.task}")
    lora = LoraSettings(args.lora_r, args.lora_alpha, args.lora_dropout, tuple(args.target_modules.split(",")))
    add_lora_adapter(llm, adapter_name, lora)
    params = [p for _, p in adapter_parameters(llm, adapter_name)]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, int(args.max_steps * args.warmup)), args.max_steps)
    stream = batches(encoded, args.batch_size, llm.tokenizer, rng)
    history = []
    dev_before = answer_loss(llm, adapter_name, dev_encoded, args.batch_size) if dev_encoded else None
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
                log.info(f"step {step + 1}/{args.max_steps} loss {step_loss:.4f} ({time.time() - started:.0f}s)")
    llm.model.eval()
    dev_after = answer_loss(llm, adapter_name, dev_encoded, args.batch_size) if dev_encoded else None
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
