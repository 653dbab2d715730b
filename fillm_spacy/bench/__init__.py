"""Benchmarks that print JSON: `python -m fillm_spacy.bench MODE` (pipe, train, encoder, accuracy, scale).

Speed and memory are measured here, never in timed tests.
"""
