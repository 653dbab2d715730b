"""`python -m fillm_spacy.bench`: see cli.py."""

from .cli import main

main()
