"""Steps of the project workflow (project.yml): data set-up and conversion, floret vectors.

Each module is a command line: `python -m fillm_spacy.workflow.data`, `python -m fillm_spacy.workflow.vectors`.
"""
