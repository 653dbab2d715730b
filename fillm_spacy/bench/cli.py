"""`python -m fillm_spacy.bench`: the command line; every measurement runs in a fresh subprocess.

    python -m fillm_spacy.bench pipe --pipeline training/tl_fillm_sm/model-best --pipeline training/baseline/model
    python -m fillm_spacy.bench train --config configs/tl_fillm_sm.cfg --train corpus/ud/train.spacy
    python -m fillm_spacy.bench encoder --model gemma3-270m
    python -m fillm_spacy.bench accuracy --pipeline training/tl_fillm_sm/model-best --dev corpus/ud/dev.spacy
    python -m fillm_spacy.bench scale --preset seallm-7b-v2.5 --device cuda --dtype bfloat16
    python -m fillm_spacy.bench annotate --pipeline tl_fillm_sm --texts assets/raw/alt-fil-wikinews.txt
    python -m fillm_spacy.bench profile --pipeline training/tl_fillm_sm/model-best --texts assets/raw/alt-fil-wikinews.txt


Each measurement runs in its own interpreter, so each peak RSS is that of one pipeline loaded once.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from ..readers.raw_text import first_lines
from .annotate import add_arguments as add_annotate_arguments
from .annotate import run_annotate_bench
from .measure import (
    ACCURACY_KEYS,
    measure_accuracy,
    measure_encoder,
    measure_pipe,
    measure_train,
    measure_warm_load,
)
from .profile import measure_profile


def in_subprocess(args: List[str]) -> Dict:
    """Run one measurement in a fresh interpreter (its own peak RSS) and parse its JSON."""
    result = subprocess.run(
        [sys.executable, "-m", "fillm_spacy.bench", *args, "--inline"], capture_output=True, text=True
    )
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-5:] or ["failed"], "args": args}
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_scale(args) -> Dict:
    """Each (training, last_layer) in its own process, so each peak memory is its own."""
    from .scale import measure_scale

    if args.inline:
        texts = first_lines(Path(args.texts), args.lines)
        return measure_scale(
            args.preset,
            texts,
            args.tokenizer,
            args.device,
            args.dtype,
            args.training[0],
            args.last_layer[0] if args.last_layer else None,
            args.words_per_batch,
            args.steps,
            inference=True,
        )
    common = [
        "--preset",
        args.preset,
        "--texts",
        args.texts,
        "--lines",
        str(args.lines),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--words-per-batch",
        str(args.words_per_batch),
        "--steps",
        str(args.steps),
    ]
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
    pipe.add_argument(
        "--precision",
        default=None,
        choices=["auto", "float32", "bfloat16"],
        help="what the LLM layers compute in (default: each pipeline's own setting)",
    )
    pipe.add_argument("--compiled", action="store_true", help="run the LLM layers torch.compile'd")
    pipe.add_argument("--cold-cache", action="store_true", help="also time a load with an empty model cache")
    pipe.add_argument("--warm-load", action="store_true", help=argparse.SUPPRESS)  # the second-load measurement
    train = sub.add_parser("train", help="seconds per 1,000 training words and peak RSS")
    train.add_argument("--config", default="configs/tl_fillm_sm.cfg")
    train.add_argument("--train", default="corpus/ud/train.spacy")
    train.add_argument("--dev", default="corpus/ud/dev.spacy")
    train.add_argument("--steps", type=int, default=20)
    train.add_argument(
        "--vectors", default="vectors/floret-tl", help="paths.vectors (the config's static vectors); '' for none"
    )
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
    scale = sub.add_parser(
        "scale",
        help="random-weight model of a given shape (SeaLLM-7B-v2.5): LoRA vs full fine-tuning and inference, on GPU",
    )
    scale.add_argument("--preset", default="seallm-7b-v2.5", help="seallm-7b-v2.5 or tiny")
    scale.add_argument("--texts", default="assets/raw/alt-fil-wikinews.txt")
    scale.add_argument("--lines", type=int, default=1000)
    scale.add_argument(
        "--tokenizer", default=None, help="a tokenizer.json (e.g. Gemma's); default: a small BPE trained on the texts"
    )
    scale.add_argument("--device", default="cuda")
    scale.add_argument("--dtype", default="bfloat16")
    scale.add_argument("--training", action="append", default=None, help="lora and/or full (repeat; default both)")
    scale.add_argument("--last-layer", action="append", type=int, default=None, help="layers run (repeat; default all)")
    scale.add_argument("--words-per-batch", type=int, default=1000)
    scale.add_argument("--steps", type=int, default=8)
    profile = sub.add_parser(
        "profile",
        help="seconds per component, the LLM layers' pieces, FLOPs and GFLOP/s against the measured matmul peak",
    )
    profile.add_argument("--pipeline", required=True)
    profile.add_argument("--texts", default="assets/raw/alt-fil-wikinews.txt")
    profile.add_argument("--lines", type=int, default=500)
    profile.add_argument(
        "--precision",
        default=None,
        choices=["auto", "float32", "bfloat16"],
        help="what the LLM layers compute in (default: the pipeline's own setting)",
    )
    profile.add_argument(
        "--matmul-size", type=int, default=2048, help="side of the square matmul that measures the peak"
    )
    annotate = sub.add_parser(
        "annotate", help="corpus annotator words/s: local engine and Ray, 1 and 2 workers, scaling ratios"
    )
    add_annotate_arguments(annotate)
    for p in (pipe, train, enc, acc, scale, profile):
        p.add_argument("--inline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.mode == "pipe":
        if args.inline and args.warm_load:
            result = measure_warm_load(args.pipeline[0])
        elif args.inline:
            result = measure_pipe(
                args.pipeline[0],
                args.texts,
                args.lines,
                args.batch_size,
                args.n_process,
                args.int8,
                args.precision,
                args.compiled or None,
            )
        else:
            common = ["--texts", args.texts, "--lines", str(args.lines), "--n-process", str(args.n_process)]
            if args.precision:
                common += ["--precision", args.precision]
            if args.compiled:
                common += ["--compiled"]
            if args.batch_size:
                common += ["--batch-size", str(args.batch_size)]
            runs = [in_subprocess(["pipe", "--pipeline", p, *common]) for p in args.pipeline]
            for run, pipeline in zip(runs, args.pipeline):  # measured apart: two loads must not count in peak RSS
                warm = in_subprocess(["pipe", "--pipeline", pipeline, "--warm-load"])
                run["load_seconds_base_model_in_memory"] = warm.get(
                    "load_seconds_base_model_in_memory", warm.get("error")
                )
            if args.int8:
                runs.append(in_subprocess(["pipe", "--pipeline", args.pipeline[0], "--int8", *common]))
            result = {"runs": runs}
            if len(runs) > 1 and all("words_per_second" in r for r in runs[:2]):
                result["words_per_second_ratio_first_to_second"] = round(
                    runs[0]["words_per_second"] / runs[1]["words_per_second"], 3
                )
            if args.cold_cache:
                with tempfile.TemporaryDirectory() as cache:
                    start = time.perf_counter()
                    env = {**os.environ, "FILLM_CACHE": cache}
                    subprocess.run(
                        [sys.executable, "-c", f"import spacy; spacy.load({args.pipeline[0]!r})"],
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                    result["load_seconds_cold_cache"] = round(time.perf_counter() - start, 1)
    elif args.mode == "train":
        overrides = {"paths.vectors": args.vectors or None, **dict(item.split("=", 1) for item in args.set)}
        result = (
            measure_train(args.config, args.train, args.dev, args.steps, overrides)
            if args.inline
            else in_subprocess(
                [
                    "train",
                    "--config",
                    args.config,
                    "--train",
                    args.train,
                    "--dev",
                    args.dev,
                    "--steps",
                    str(args.steps),
                    "--vectors",
                    args.vectors,
                    *[part for s in args.set for part in ("--set", s)],
                ]
            )
        )
    elif args.mode == "accuracy":
        if args.inline:
            result = measure_accuracy(args.pipeline, args.dev, args.int8)
        else:
            common = ["accuracy", "--pipeline", args.pipeline, "--dev", args.dev]
            runs = [in_subprocess(common), in_subprocess([*common, "--int8"])]
            result = {"runs": runs}
            if all("error" not in r for r in runs):
                result["int8_minus_float"] = {
                    k: round(runs[1][k] - runs[0][k], 2) for k in ACCURACY_KEYS if k in runs[0] and k in runs[1]
                }
    elif args.mode == "scale":
        result = run_scale(args)
    elif args.mode == "annotate":
        result = run_annotate_bench(args)
    elif args.mode == "profile":
        if args.inline:
            result = measure_profile(args.pipeline, args.texts, args.lines, args.precision, args.matmul_size)
        else:
            precision = ["--precision", args.precision] if args.precision else []
            result = in_subprocess(
                [
                    "profile",
                    "--pipeline",
                    args.pipeline,
                    "--texts",
                    args.texts,
                    "--lines",
                    str(args.lines),
                    "--matmul-size",
                    str(args.matmul_size),
                    *precision,
                ]
            )
    else:
        result = (
            measure_encoder(args.model, args.texts, args.lines, args.last_layer, args.lora_r)
            if args.inline
            else in_subprocess(
                [
                    "encoder",
                    "--model",
                    args.model,
                    "--texts",
                    args.texts,
                    "--lines",
                    str(args.lines),
                    "--last-layer",
                    str(args.last_layer),
                    "--lora-r",
                    str(args.lora_r),
                ]
            )
        )
    import torch

    result["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    print(json.dumps(result))
