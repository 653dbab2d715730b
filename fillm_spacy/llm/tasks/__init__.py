"""spacy-llm tasks of fillm_spacy, one package per task as spacy-llm lays out its own (the
task, its parser, its registered factory, its prompt as a Jinja template in templates/).

- pos/: `fillm.POSTagging.v1`, UPOS tagging from a generated numbered table.
"""
