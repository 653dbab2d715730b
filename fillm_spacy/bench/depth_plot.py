"""The depth curve's picture: held-out LAS and UPOS of each run against its words/s.

Each run is one point, labelled by its name; the baseline is its own point (matplotlib; extra
`plots`). Speed is `bench pipe`'s words/s.

    python -m fillm_spacy.bench.depth_plot runs.json docs/depth_curve.png

runs.json: [{"name": "frozen 4+8+12", "words_per_second": 260, "pos_acc": 92.1, "dep_las": 68.0,
"baseline": false}, ...] (scores in %; one entry with "baseline": true).
"""

import json
from pathlib import Path
from typing import Dict, List, Optional

import typer

from ..console import fail, run_app, setup_cli_logging


def plot_depth_curve(runs: List[Dict], output: Path) -> Path:
    """Two panels (LAS, UPOS) of score against words/s; runs labelled by name."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError as err:
        raise SystemExit('The depth plot needs matplotlib: pip install -e ".[plots]"') from err
    missing = [
        r.get("name", "?") for r in runs if not all(k in r for k in ("name", "words_per_second", "pos_acc", "dep_las"))
    ]
    if missing or not runs:
        raise ValueError(
            f"Each run needs name, words_per_second, pos_acc and dep_las; incomplete: {missing or 'no runs'}"
        )
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    for axis, key, title in ((axes[0], "dep_las", "held-out LAS"), (axes[1], "pos_acc", "held-out UPOS")):
        for run in runs:
            style = dict(marker="s", color="black") if run.get("baseline") else dict(marker="o", color="tab:blue")
            axis.scatter(run["words_per_second"], run[key], **style)
            axis.annotate(
                run["name"], (run["words_per_second"], run[key]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        axis.set_xscale("log")
        speeds = [run["words_per_second"] for run in runs]
        axis.set_xlim(min(speeds) / 1.6, max(speeds) * 2.5)  # room for the labels
        axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("words/s (bench pipe, 2 CPU cores)")
        axis.set_ylabel(f"{title} (%)")
        axis.grid(True, alpha=0.3)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output


app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.command(help=__doc__.splitlines()[0])
def depth_plot(
    runs: Path = typer.Argument(..., help="JSON list of runs (see the module doc)"),
    output: Path = typer.Argument(..., help="the PNG to write"),
) -> Path:
    try:
        written = plot_depth_curve(json.loads(runs.read_text(encoding="utf8")), output)
    except (OSError, ValueError) as error:  # no such file, not JSON, a run without its scores
        fail(str(error), code=1)
    print(written)
    return written


def main(argv: Optional[List[str]] = None) -> Optional[Path]:
    setup_cli_logging()
    return run_app(app, argv, prog_name="python -m fillm_spacy.bench.depth_plot")


if __name__ == "__main__":
    main()
