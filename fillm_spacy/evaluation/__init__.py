"""Evaluation: spaCy's scores for each pipeline and test set, paired significance tests between
tl_fillm and the calamanCy-style baseline, and ROUGE for the summarizer.

- `compare`: the CLI (`python -m fillm_spacy.evaluation.compare evaluate|report`);
- `runner`: `spacy evaluate` runs, pipeline predictions, generative runs' saved predictions;
- `counts`: per-sentence (tp, fp, fn) counts that add up to spaCy's Scorer;
- `stats`: paired bootstrap and paired t-test (scipy), shared by compare and ROUGE;
- `report`: one comparison per test set and its markdown table;
- `published`: calamanCy's published numbers (`published.json`);
- `rouge`: ROUGE-1/2/L of the summarizer beside lead-1 (a CLI too).

Nothing is imported here so that running a module with -m does not import it twice.
"""
