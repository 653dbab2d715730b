"""Benchmarks that print JSON (speed and memory are checked here, never in timed tests).

    python -m fillm_spacy.bench pipe --pipeline training/tl_fillm/model-best --pipeline training/baseline/model
    python -m fillm_spacy.bench train --config configs/tl_fillm.cfg --train corpus/ud/train.spacy
    python -m fillm_spacy.bench encoder --model gemma3-270m
    python -m fillm_spacy.bench accuracy --pipeline training/tl_fillm/model-best --dev corpus/ud/dev.spacy
    python -m fillm_spacy.bench scale --preset seallm-7b-v2.5 --device cuda --dtype bfloat16

Every measurement runs in a fresh subprocess, so peak RSS is that of one pipeline alone.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def directory_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20


def read_lines(path: Path, n_lines: int) -> List[str]:
    with Path(path).open(encoding="utf8") as stream:
        lines = [line.strip() for line, _ in zip(stream, range(n_lines))]
    return [line for line in lines if line]


def measure_pipe(pipeline: str, texts_path: str, n_lines: int, batch_size: Optional[int], n_process: int, int8: bool) -> Dict:
    """Words per second of nlp.pipe, load time and peak RSS, in this process.

    batch_size None: the pipeline's own `nlp.batch_size` (what `nlp.pipe` uses by default).
    """
    import spacy

    from .speed import quantize_for_inference

    texts = read_lines(Path(texts_path), n_lines)
    start = time.perf_counter()
    nlp = spacy.load(pipeline)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    spacy.load(pipeline)  # base model already in memory: what a second pipeline costs
    warm_load_s = time.perf_counter() - start
    if int8:
        quantize_for_inference(nlp)
    batch_size = batch_size or nlp.batch_size
    list(nlp.pipe(texts[:8], batch_size=batch_size))  # first-call costs (allocations) out of the timing
    start = time.perf_counter()
    n_words = sum(len(doc) for doc in nlp.pipe(texts, batch_size=batch_size, n_process=n_process))
    seconds = time.perf_counter() - start
    return {
        "pipeline": pipeline,
        "int8": int8,
        "n_process": n_process,
        "batch_size": batch_size,
        "texts": len(texts),
        "words": n_words,
        "seconds": round(seconds, 2),
        "words_per_second": round(n_words / seconds, 1),
        "load_seconds": round(load_s, 2),
        "load_seconds_base_model_in_memory": round(warm_load_s, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "saved_size_mb": round(directory_mb(Path(pipeline)), 2),
    }


ACCURACY_KEYS = ("token_acc", "pos_acc", "morph_acc", "lemma_acc", "dep_uas", "dep_las", "sents_f", "ents_f")


def measure_accuracy(pipeline: str, dev: str, int8: bool) -> Dict:
    """spaCy's scores on `dev` (and the time they took) with or without a speed option."""
    import spacy
    from spacy.training import Corpus

    from .speed import quantize_for_inference

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

    cfg = spacy.util.load_config(config, overrides={"paths.train": train, "paths.dev": dev, **overrides}, interpolate=False)
    nlp = init_nlp(cfg)
    # The optimizer as `spacy train` builds it (its schedules refer to other settings).
    optimizer = spacy.util.registry.resolve({"optimizer": nlp.config.interpolate()["training"]["optimizer"]})["optimizer"]
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

    from .layers.llm_encoder import llm_encoder_v1

    nlp = spacy.blank("tl")
    docs = [nlp(t) for t in read_lines(Path(texts_path), n_lines)]
    encoder = llm_encoder_v1(model_name=model, last_layer=last_layer, lora_r=lora_r, contextualizer_width=0)
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


def in_subprocess(args: List[str]) -> Dict:
    """Run one measurement in a fresh interpreter (its own peak RSS) and parse its JSON."""
    result = subprocess.run([sys.executable, "-m", "fillm_spacy.bench", *args, "--inline"], capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-5:] or ["failed"], "args": args}
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_scale(args) -> Dict:
    """Each (training, last_layer) in its own process, so each peak memory is its own."""
    from .scale import measure_scale

    if args.inline:
        texts = read_lines(Path(args.texts), args.lines)
        return measure_scale(
            args.preset, texts, args.tokenizer, args.device, args.dtype, args.training[0],
            args.last_layer[0] if args.last_layer else None, args.words_per_batch, args.steps, inference=True,
        )
    common = ["--preset", args.preset, "--texts", args.texts, "--lines", str(args.lines), "--device", args.device,
              "--dtype", args.dtype, "--words-per-batch", str(args.words_per_batch), "--steps", str(args.steps)]
    if args.tokenizer:
        common += ["--tokenizer", args.tokenizer]
    runs = []
    for last_layer in args.last_layer or [0]:
        for training in args.training or ["lora", "full"]:
            layer_args = ["--last-layer", str(last_layer)] if last_layer else []
            runs.append(in_subprocess(["scale", "--training", training, *layer_args, *common]))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)  # progress, in case a later run dies
    return {"runs": runs}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fillm_spacy.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    pipe = sub.add_parser("pipe", help="nlp.pipe words/s, load time, peak RSS, saved size per pipeline")
    pipe.add_argument("--pipeline", action="append", required=True, help="pipeline dir (repeat; the first is tl_fillm)")
    pipe.add_argument("--texts", default="assets/raw/alt-fil-wikinews.txt")
    pipe.add_argument("--lines", type=int, default=500)
    pipe.add_argument("--batch-size", type=int, default=None, help="default: each pipeline's own nlp.batch_size")
    pipe.add_argument("--n-process", type=int, default=1)
    pipe.add_argument("--int8", action="store_true", help="also measure int8 dynamic quantization of the LLM")
    pipe.add_argument("--cold-cache", action="store_true", help="also time a load with an empty model cache")
    train = sub.add_parser("train", help="seconds per 1,000 training words and peak RSS")
    train.add_argument("--config", default="configs/tl_fillm.cfg")
    train.add_argument("--train", default="corpus/ud/train.spacy")
    train.add_argument("--dev", default="corpus/ud/dev.spacy")
    train.add_argument("--steps", type=int, default=20)
    train.add_argument("--vectors", default="vectors/floret-tl", help="paths.vectors (the config's static vectors); '' for none")
    train.add_argument("--set", action="append", default=[], help="config override key=value (repeat)")
    enc = sub.add_parser("encoder", help="encoder pieces/s, forward and LoRA training")
    enc.add_argument("--model", default="gemma3-270m")
    enc.add_argument("--texts", default="assets/raw/alt-fil-wikinews.txt")
    enc.add_argument("--lines", type=int, default=60)
    enc.add_argument("--last-layer", type=int, default=6)
    enc.add_argument("--lora-r", type=int, default=16)
    acc = sub.add_parser("accuracy", help="accuracy cost of the speed options (int8) on a dev set")
    acc.add_argument("--pipeline", required=True)
    acc.add_argument("--dev", default="corpus/ud/dev.spacy")
    acc.add_argument("--int8", action="store_true", help=argparse.SUPPRESS)
    scale = sub.add_parser("scale", help="random-weight model of a given shape (SeaLLM-7B-v2.5): LoRA vs full fine-tuning and inference, on GPU")
    scale.add_argument("--preset", default="seallm-7b-v2.5", help="seallm-7b-v2.5 or tiny")
    scale.add_argument("--texts", default="assets/raw/alt-fil-wikinews.txt")
    scale.add_argument("--lines", type=int, default=1000)
    scale.add_argument("--tokenizer", default=None, help="a tokenizer.json (e.g. Gemma's); default: a small BPE trained on the texts")
    scale.add_argument("--device", default="cuda")
    scale.add_argument("--dtype", default="bfloat16")
    scale.add_argument("--training", action="append", default=None, help="lora and/or full (repeat; default both)")
    scale.add_argument("--last-layer", action="append", type=int, default=None, help="layers run (repeat; default all)")
    scale.add_argument("--words-per-batch", type=int, default=1000)
    scale.add_argument("--steps", type=int, default=8)
    for p in (pipe, train, enc, acc, scale):
        p.add_argument("--inline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.mode == "pipe":
        if args.inline:
            result = measure_pipe(args.pipeline[0], args.texts, args.lines, args.batch_size, args.n_process, args.int8)
        else:
            common = ["--texts", args.texts, "--lines", str(args.lines), "--n-process", str(args.n_process)]
            if args.batch_size:
                common += ["--batch-size", str(args.batch_size)]
            runs = [in_subprocess(["pipe", "--pipeline", p, *common]) for p in args.pipeline]
            if args.int8:
                runs.append(in_subprocess(["pipe", "--pipeline", args.pipeline[0], "--int8", *common]))
            result = {"runs": runs}
            if len(runs) > 1 and all("words_per_second" in r for r in runs[:2]):
                result["words_per_second_ratio_first_to_second"] = round(runs[0]["words_per_second"] / runs[1]["words_per_second"], 3)
            if args.cold_cache:
                with tempfile.TemporaryDirectory() as cache:
                    start = time.perf_counter()
                    env = {**os.environ, "FILLM_CACHE": cache}
                    subprocess.run([sys.executable, "-c", f"import spacy; spacy.load({args.pipeline[0]!r})"], env=env, check=True, capture_output=True)
                    result["load_seconds_cold_cache"] = round(time.perf_counter() - start, 1)
    elif args.mode == "train":
        overrides = {"paths.vectors": args.vectors or None, **dict(item.split("=", 1) for item in args.set)}
        result = measure_train(args.config, args.train, args.dev, args.steps, overrides) if args.inline else in_subprocess(
            ["train", "--config", args.config, "--train", args.train, "--dev", args.dev, "--steps", str(args.steps),
             "--vectors", args.vectors, *sum((["--set", s] for s in args.set), [])]
        )
    elif args.mode == "accuracy":
        if args.inline:
            result = measure_accuracy(args.pipeline, args.dev, args.int8)
        else:
            common = ["accuracy", "--pipeline", args.pipeline, "--dev", args.dev]
            runs = [in_subprocess(common), in_subprocess([*common, "--int8"])]
            result = {"runs": runs}
            if all("error" not in r for r in runs):
                result["int8_minus_float"] = {k: round(runs[1][k] - runs[0][k], 2) for k in ACCURACY_KEYS if k in runs[0] and k in runs[1]}
    elif args.mode == "scale":
        result = run_scale(args)
    else:
        result = measure_encoder(args.model, args.texts, args.lines, args.last_layer, args.lora_r) if args.inline else in_subprocess(
            ["encoder", "--model", args.model, "--texts", args.texts, "--lines", str(args.lines), "--last-layer", str(args.last_layer), "--lora-r", str(args.lora_r)]
        )
    import torch

    result["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
