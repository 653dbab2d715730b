"""Evaluation: spaCy's scores for each pipeline and test set, and paired significance tests
between tl_fillm and the calamanCy-style baseline.

Everything lives in `fillm_spacy.evaluation.compare` (a CLI too: `python -m
fillm_spacy.evaluation.compare evaluate|report`). Nothing is imported here so that running the
module with -m does not import it twice.
"""
