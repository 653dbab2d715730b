"""Learning curve: each pipeline trained on growing shares of the training data, scored on the
same held-out sets; a table and a plot that answer "with my amount of labelled data, which
pipeline should I train?".

    python -m fillm_spacy.evaluation.learning_curve run --output-dir training/learning-curve \\
        --sizes 150,300,700,all --seeds 0,1 --pipelines baseline,tl_fillm_sm,tl_fillm_lg
    python -m fillm_spacy.evaluation.learning_curve report --output-dir training/learning-curve \\
        --table metrics/learning-curve.md --plot metrics/learning-curve.png

Each point trains the shipped recipe (the configs and overrides of project.yml's train-lg,
train-sm-gold and train-baseline) on the first N sentences of a seeded shuffle of the
treebank's training docs, with NER on a share of its training docs alongside, and the step
budget scaled with the data (the same number of passes over it as the full budget makes over
all of it; at least `min_steps`); the seed also seeds training. tl_fillm_sm is trained on gold
data only here: its shipped recipe adds silver text annotated by a tl_fillm_lg trained on all
the data. Runs whose model already exists are kept, so an interrupted run resumes.
"""

import json
import logging
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import typer

from ..console import fail, setup_cli_logging
from .runner import evaluate

log = logging.getLogger("fillm_spacy.learning_curve")
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])

PIPELINES = ("baseline", "tl_fillm_sm", "tl_fillm_lg")
# The shipped step budgets and evaluation frequencies (project.yml vars, the configs' [training]).
FULL_STEPS = {"tl_fillm_lg": 3000, "tl_fillm_sm": 3000, "baseline": 1600, "baseline_ner": 1000}
EVAL_FREQUENCY = {"tl_fillm_lg": 250, "tl_fillm_sm": 250, "baseline": 200, "baseline_ner": 200}
# Scores of the plot and table: (spaCy score key, test set stem, label).
SCORES = (
    ("pos_acc", "ud-newscrawl-heldout", "UPOS"),
    ("dep_las", "ud-newscrawl-heldout", "LAS"),
    ("ents_f", "ner-wikiann", "NER F (WikiANN)"),
)


@dataclass
class Point:
    """One training of the curve."""

    pipeline: str
    size: Optional[int]  # treebank training sentences; None: all of them
    seed: int
    ner_share: float

    @property
    def name(self) -> str:
        return f"{self.pipeline}-{self.size or 'all'}-s{self.seed}"


def subset(source: Path, target: Path, n: Optional[int], share: float, seed: int) -> int:
    """The first n docs (or the first `share` of them) of a seeded shuffle of a DocBin; returns
    how many were written."""
    import spacy
    from spacy.tokens import DocBin

    docs = list(DocBin().from_disk(source).get_docs(spacy.blank("xx").vocab))
    random.Random(seed).shuffle(docs)
    keep = n if n is not None else max(1, round(share * len(docs)))
    if keep > len(docs):
        raise ValueError(f"{source} has {len(docs)} docs, fewer than the {keep} asked for")
    target.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs[:keep], store_user_data=True).to_disk(target)
    return keep


def count_docs(path: Path) -> int:
    from spacy.tokens import DocBin

    return len(DocBin().from_disk(path))


def scaled(full: int, share: float, min_steps: int) -> int:
    return max(min_steps, round(full * share))


def train_commands(
    point: Point,
    data: Dict[str, Path],
    out: Path,
    share: float,
    ner_share: float,
    model: str,
    configs: Path,
    min_steps: int,
    gpu_id: int,
) -> List[List[str]]:
    """The `spacy train` (and assemble) commands of one point, as project.yml runs them."""
    train = [sys.executable, "-m", "spacy", "train"]
    common = {"paths.vectors": data["vectors"], "system.seed": point.seed, "gpu-id": gpu_id}

    def budget(kind: str, data_share: float) -> Dict[str, int]:
        steps = scaled(FULL_STEPS[kind], data_share, min_steps)
        frequency = max(25, round(EVAL_FREQUENCY[kind] * steps / FULL_STEPS[kind]))
        return {"training.max_steps": steps, "training.eval_frequency": frequency}

    if point.pipeline == "baseline":
        syntax = {"paths.train": data["train"], "paths.dev": data["dev"], **budget("baseline", share)}
        ner = {"paths.train": data["ner_train"], "paths.dev": data["ner_dev"], **budget("baseline_ner", ner_share)}
        return [
            [*train, str(configs / "baseline_parser.cfg"), "--output", str(out / "parser"), "--nlp.lang", "tl"]
            + flags({**syntax, **common}),
            [*train, str(configs / "baseline_ner.cfg"), "--output", str(out / "ner"), "--nlp.lang", "tl"]
            + flags({**ner, **common}),
            [sys.executable, "-m", "spacy", "assemble", str(configs / "baseline_assemble.cfg"), str(out / "model")]
            + flags(
                {"paths.parser_model": out / "parser" / "model-best", "paths.ner_model": out / "ner" / "model-best"}
            ),
        ]
    config = configs / ("tl_fillm_lg.cfg" if point.pipeline == "tl_fillm_lg" else "tl_fillm_sm.cfg")
    settings = {
        "paths.train": data["train"],
        "paths.dev": data["dev"],
        "paths.ner_train": data["ner_train"],
        "paths.ner_dev": data["ner_dev"],
        "components.tok2vec.model.model_name": model,
        **common,
        **budget(point.pipeline, share),
    }
    return [[*train, str(config), "--output", str(out), *flags(settings)]]


def flags(settings: Dict[str, object]) -> List[str]:
    """{"paths.dev": x, ...} as command-line overrides: ["--paths.dev", "x", ...]."""
    return [part for key, value in settings.items() for part in (f"--{key}", str(value))]


# Written into a point's run directory once every training command of it has finished.
TRAINED = "trained"


def model_path(point: Point, root: Path) -> Path:
    out = root / "runs" / point.name
    return out / "model" if point.pipeline == "baseline" else out / "model-best"


def parse_sizes(value: str) -> List[Optional[int]]:
    sizes = []
    for part in value.split(","):
        part = part.strip()
        if part == "all":
            sizes.append(None)
        elif part.isdigit() and int(part) > 0:
            sizes.append(int(part))
        else:
            fail(f"--sizes takes positive whole numbers or 'all', got {part!r}")
    return sizes


@app.command()
def run(
    output_dir: Path = typer.Option(..., help="runs/, data/ and metrics/ go here"),
    sizes: str = typer.Option("150,300,700,all", help="training sentences per point ('all': the whole file)"),
    ner_shares: str = typer.Option("0.25,0.5,1,1", help="share of the NER training docs at each size"),
    seeds: str = typer.Option("0,1", help="seeds below 'all' (subset and training); 'all' runs the first only"),
    pipelines: str = typer.Option(",".join(PIPELINES), help="which pipelines"),
    train: Path = typer.Option(Path("corpus/ud/train.spacy")),
    dev: Path = typer.Option(Path("corpus/ud/dev.spacy")),
    ner_train: Path = typer.Option(Path("corpus/ner/train.spacy")),
    ner_dev: Path = typer.Option(Path("corpus/ner/dev.spacy")),
    vectors: Path = typer.Option(Path("vectors/floret-tl")),
    test_dir: Path = typer.Option(Path("corpus/test")),
    configs: Path = typer.Option(Path("configs")),
    model: str = typer.Option("gemma3-270m", help="base model of the tl_fillm pipelines"),
    min_steps: int = typer.Option(200, help="no point trains fewer steps"),
    gpu_id: int = typer.Option(-1),
):
    """Train and evaluate every point not trained yet (a point stopped part-way is trained again
    from the start)."""
    setup_cli_logging()
    size_list = parse_sizes(sizes)
    shares = [float(s) for s in ner_shares.split(",")]
    if len(shares) != len(size_list) or not all(0 < s <= 1 for s in shares):
        fail("--ner-shares takes one share in (0, 1] per size")
    chosen = [p.strip() for p in pipelines.split(",")]
    unknown = [p for p in chosen if p not in PIPELINES]
    if unknown:
        fail(f"--pipelines: unknown {unknown}; choose from {PIPELINES}")
    for path in (train, dev, ner_train, ner_dev, vectors, test_dir, configs):
        if not path.exists():
            fail(f"{path} does not exist: run the workflow's setup, convert and train-vectors first")
    total = count_docs(train)
    seed_list = [int(s) for s in seeds.split(",")]
    points = [
        Point(pipeline, size, seed, share)
        for seed in seed_list
        for size, share in zip(size_list, shares)
        for pipeline in chosen
        if size is not None or seed == seed_list[0]
    ]
    for point in points:
        trained_model = model_path(point, output_dir)
        out = output_dir / "runs" / point.name
        if not (out / TRAINED).exists():
            # spaCy writes model-best at its first evaluation: a run that was stopped leaves one
            # behind, so only the marker written after the last command says a point is trained.
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(output_dir / "metrics" / point.name, ignore_errors=True)
            data = {"dev": dev, "ner_dev": ner_dev, "vectors": vectors, "train": train, "ner_train": ner_train}
            share = 1.0
            if point.size is not None:
                data["train"] = output_dir / "data" / f"ud-train-{point.size}-s{point.seed}.spacy"
                share = subset(train, data["train"], point.size, 1.0, point.seed) / total
            if point.ner_share < 1:
                data["ner_train"] = output_dir / "data" / f"ner-train-{point.ner_share:g}-s{point.seed}.spacy"
                subset(ner_train, data["ner_train"], None, point.ner_share, point.seed)
            for command in train_commands(point, data, out, share, point.ner_share, model, configs, min_steps, gpu_id):
                log.info("%s: %s", point.name, " ".join(command[1:]))
                out.parent.mkdir(parents=True, exist_ok=True)
                with open(out.parent / f"{point.name}.log", "a") as stream:
                    subprocess.run(command, check=True, stdout=stream, stderr=subprocess.STDOUT)
            out.mkdir(parents=True, exist_ok=True)
            (out / TRAINED).write_text("")
        if not (output_dir / "metrics" / point.name).exists():
            evaluate([(point.name, str(trained_model))], test_dir, output_dir / "metrics")
        meta = {
            "pipeline": point.pipeline,
            "size": point.size or total,
            "all": point.size is None,
            "seed": point.seed,
            "ner_share": point.ner_share,
        }
        (output_dir / "metrics" / point.name / "point.json").write_text(json.dumps(meta) + "\n")


def collect(output_dir: Path) -> List[Dict]:
    """Every evaluated point: its settings and its scores (percent)."""
    rows = []
    for point_file in sorted((output_dir / "metrics").glob("*/point.json")):
        row = json.loads(point_file.read_text())
        for key, test, label in SCORES:
            path = point_file.parent / f"{test}.json"
            value = json.loads(path.read_text()).get(key) if path.exists() else None
            row[label] = None if value is None else 100.0 * value
        rows.append(row)
    return rows


def summarize(rows: List[Dict]) -> Dict:
    """{(pipeline, size): {label: [per-seed values]}}."""
    grouped: Dict = {}
    for row in rows:
        cell = grouped.setdefault((row["pipeline"], row["size"]), {label: [] for _, _, label in SCORES})
        cell.setdefault("ner_share", row["ner_share"])
        for _, _, label in SCORES:
            if row[label] is not None:
                cell[label].append(row[label])
    return grouped


def mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def table(grouped: Dict) -> str:
    """Markdown: one row per size, mean (and range over seeds) of each pipeline's scores."""
    pipelines = [p for p in PIPELINES if any(k[0] == p for k in grouped)]
    sizes = sorted({k[1] for k in grouped})
    lines = []
    for _, _, label in SCORES:
        lines += [
            f"**{label}** (mean over seeds; range in brackets)",
            "",
            "| sentences | NER docs | " + " | ".join(pipelines) + " | lg − baseline |",
            "|---:|---:|" + "---:|" * (len(pipelines) + 1),
        ]
        for size in sizes:
            cells, means = [], {}
            share = next(grouped[(p, size)]["ner_share"] for p in pipelines if (p, size) in grouped)
            for p in pipelines:
                values = grouped.get((p, size), {}).get(label, [])
                means[p] = mean(values)
                if not values:
                    cells.append("–")
                elif len(values) == 1:
                    cells.append(f"{values[0]:.2f}")
                else:
                    cells.append(f"{means[p]:.2f} [{min(values):.2f}, {max(values):.2f}]")
            gap = (
                f"{means['tl_fillm_lg'] - means['baseline']:+.2f}"
                if means.get("tl_fillm_lg") is not None and means.get("baseline") is not None
                else "–"
            )
            lines.append(f"| {size} | {share:.0%} | " + " | ".join(cells) + f" | {gap} |")
        lines.append("")
    return "\n".join(lines)


def plot(grouped: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(SCORES), figsize=(4.2 * len(SCORES), 3.6))
    for axis, (_, _, label) in zip(axes, SCORES):
        for pipeline in PIPELINES:
            points = sorted((size, grouped[(p, size)][label]) for p, size in grouped if p == pipeline)
            points = [(size, values) for size, values in points if values]
            if not points:
                continue
            xs = [size for size, _ in points]
            ys = [mean(values) for _, values in points]
            low = [y - min(values) for y, (_, values) in zip(ys, points)]
            high = [max(values) - y for y, (_, values) in zip(ys, points)]
            axis.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=pipeline)
        axis.set_xscale("log")
        sizes = sorted({size for _, size in grouped})
        axis.set_xticks(sizes, [str(size) for size in sizes])
        axis.minorticks_off()
        axis.set_xlabel("training sentences (UD)")
        axis.set_title(label)
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


@app.command()
def report(
    output_dir: Path = typer.Option(..., help="the directory `run` wrote"),
    table_output: Path = typer.Option(Path("metrics/learning-curve.md"), "--table"),
    plot_output: Path = typer.Option(Path("metrics/learning-curve.png"), "--plot"),
):
    """The table (markdown) and the plot (PNG) of every evaluated point."""
    rows = collect(output_dir)
    if not rows:
        fail(f"no evaluated points under {output_dir}/metrics: run `run` first")
    grouped = summarize(rows)
    table_output.parent.mkdir(parents=True, exist_ok=True)
    table_output.write_text(table(grouped))
    plot(grouped, plot_output)
    typer.echo(f"{len(rows)} points -> {table_output}, {plot_output}")


if __name__ == "__main__":
    app(prog_name="python -m fillm_spacy.evaluation.learning_curve")
