"""Measurements behind `python -m fillm_spacy.bench`: each returns a JSON-ready dict and is meant to
run alone in a fresh interpreter (see cli.in_subprocess), so that peak RSS is that of one job.
"""

import resource
import time
from pathlib import Path
from typing import Dict, Optional

from ..readers.raw_text import first_lines


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# The instruction sets that decide which precision runs fast: figures from CPUs that differ here
# are not comparable.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def machine() -> Dict:
    """The CPU's model name, the CPU_FLAGS it has, cores and torch's threads (Linux /proc/cpuinfo;
    elsewhere the platform's processor string and no flags)."""
    import os
    import platform

    import torch

    from ..layers.precision import cpu_info

    name, flags = cpu_info()
    return {
        "cpu": name or platform.processor() or platform.machine(),
        "cpu_flags": [f for f in CPU_FLAGS if f in flags],
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def encoder_precision(nlp, int8: bool) -> str:
    """What the pipeline's LLM layers compute in at inference: "int8" after dynamic quantization,
    else the autocast dtype its precision setting chose on this machine, else the weights' dtype;
    "none" for a pipeline without an LLM encoder."""
    from ..layers.precision import inference_dtype
    from ..pipeline.quantize import llm_encoder_modules

    found = set()
    for module in llm_encoder_modules(nlp):
        weight = next(module.llm.decoder.parameters())
        found.add(str(inference_dtype(module.precision, weight.device) or weight.dtype).replace("torch.", ""))
    if not found:
        return "none"
    return "int8" if int8 else "+".join(sorted(found))


def directory_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20


def measure_pipe(
    pipeline: str,
    texts_path: str,
    n_lines: int,
    batch_size: Optional[int],
    n_process: int,
    int8: bool,
    precision: Optional[str] = None,
    compiled: Optional[bool] = None,
) -> Dict:
    """Words per second of nlp.pipe, load time and peak RSS of one loaded pipeline, in this process.

    batch_size None: the pipeline's own `nlp.batch_size` (what `nlp.pipe` uses by default).
    precision None: the pipeline's own setting (see fillm_spacy.load).
    """
    from .. import load
    from ..pipeline.quantize import llm_encoder_modules, quantize_for_inference

    texts = first_lines(Path(texts_path), n_lines)
    start = time.perf_counter()
    nlp = load(pipeline, precision=precision, compiled=compiled)
    load_s = time.perf_counter() - start
    if int8:
        quantize_for_inference(nlp)
    batch_size = batch_size or nlp.batch_size
    # First-call costs (allocations; compilation, which covers every window length at once) out of the timing.
    list(nlp.pipe(texts[:8], batch_size=batch_size))
    start = time.perf_counter()
    n_words = sum(len(doc) for doc in nlp.pipe(texts, batch_size=batch_size, n_process=n_process))
    seconds = time.perf_counter() - start
    return {
        "pipeline": pipeline,
        "int8": int8,
        "precision": encoder_precision(nlp, int8),
        "compiled": any(module.compiled for module in llm_encoder_modules(nlp)),
        **machine(),
        "n_process": n_process,
        "batch_size": batch_size,
        "texts": len(texts),
        "words": n_words,
        "seconds": round(seconds, 2),
        "words_per_second": round(n_words / seconds, 1),
        "load_seconds": round(load_s, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "saved_size_mb": round(directory_mb(Path(pipeline)), 2),
    }


def measure_warm_load(pipeline: str) -> Dict:
    """Seconds to load `pipeline` a second time in a process that has loaded it once (the base LLM
    is then already in memory: what a second pipeline on the same base costs). Its own process,
    so that the doubled memory of two loaded copies never counts in `measure_pipe`'s peak RSS."""
    import spacy

    spacy.load(pipeline)
    start = time.perf_counter()
    spacy.load(pipeline)
    return {"pipeline": pipeline, "load_seconds_base_model_in_memory": round(time.perf_counter() - start, 2)}


ACCURACY_KEYS = ("token_acc", "pos_acc", "morph_acc", "lemma_acc", "dep_uas", "dep_las", "sents_f", "ents_f")


def measure_accuracy(pipeline: str, dev: str, int8: bool) -> Dict:
    """spaCy's scores on `dev` (and the time they took) with or without a speed option."""
    import spacy
    from spacy.training import Corpus

    from ..pipeline.quantize import quantize_for_inference

    nlp = spacy.load(pipeline)
    if int8:
        quantize_for_inference(nlp)
    examples = list(Corpus(dev)(nlp))
    start = time.perf_counter()
    scores = nlp.evaluate(examples)
    seconds = time.perf_counter() - start
    n_words = sum(len(eg.reference) for eg in examples)
    return {
        "pipeline": pipeline,
        "int8": int8,
        "words": n_words,
        "words_per_second": round(n_words / seconds, 1),
        **{key: round(100 * scores[key], 2) for key in ACCURACY_KEYS if scores.get(key) is not None},
    }


def measure_train(config: str, train: str, dev: str, steps: int, overrides: Dict[str, str]) -> Dict:
    """Seconds per 1,000 training words and peak RSS over `steps` spaCy training updates."""
    import spacy
    from spacy.training import Corpus
    from spacy.training.initialize import init_nlp

    cfg = spacy.util.load_config(
        config, overrides={"paths.train": train, "paths.dev": dev, **overrides}, interpolate=False
    )
    nlp = init_nlp(cfg)
    # The optimizer as `spacy train` builds it (its schedules refer to other settings).
    optimizer = spacy.util.registry.resolve({"optimizer": nlp.config.interpolate()["training"]["optimizer"]})[
        "optimizer"
    ]
    examples = list(Corpus(train)(nlp))
    batches = spacy.util.minibatch(examples * 10, size=8)
    n_words = 0
    start = time.perf_counter()
    for _, batch in zip(range(steps), batches):
        nlp.update(batch, sgd=optimizer)
        n_words += sum(len(eg.reference) for eg in batch)
    seconds = time.perf_counter() - start
    return {
        "config": config,
        "steps": steps,
        "words": n_words,
        "seconds_per_1000_words": round(1000 * seconds / n_words, 2),
        "words_per_second": round(n_words / seconds, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def measure_encoder(model: str, texts_path: str, n_lines: int, last_layer: int, lora_r: int) -> Dict:
    """Pieces per second of the encoder alone, forward (inference) and forward+backward (LoRA)."""
    import numpy as np
    import spacy

    from ..layers.encoder_settings import encoder_contextualizer_v1, encoder_layers_v1, encoder_lora_v1
    from ..layers.llm_encoder import llm_encoder_v2

    nlp = spacy.blank("tl")
    docs = [nlp(t) for t in first_lines(Path(texts_path), n_lines)]
    encoder = llm_encoder_v2(
        model_name=model,
        layers=encoder_layers_v1(last=last_layer),
        lora=encoder_lora_v1(r=lora_r),
        contextualizer=encoder_contextualizer_v1(width=0),
    )
    encoder.initialize()
    tokenizer = encoder.shims[0]._model.llm.tokenizer
    n_pieces = sum(len(tokenizer(d.text, add_special_tokens=False)["input_ids"]) for d in docs)
    encoder.predict(docs[:2])
    start = time.perf_counter()
    encoder.predict(docs)
    forward_s = time.perf_counter() - start
    start = time.perf_counter()
    for batch in spacy.util.minibatch(docs, 16):
        outputs, backprop = encoder.begin_update(batch)
        backprop([np.ones_like(o) for o in outputs])
    train_s = time.perf_counter() - start
    return {
        "model": model,
        "last_layer": last_layer,
        "lora_r": lora_r,
        "words": sum(len(d) for d in docs),
        "pieces": n_pieces,
        "forward_pieces_per_second": round(n_pieces / forward_s, 1),
        "train_pieces_per_second": round(n_pieces / train_s, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
