"""`python -m fillm_spacy.annotate`: see cli.py."""

from .cli import main

if __name__ == "__main__":  # a spawned worker imports this module too, and must not run it
    main()
