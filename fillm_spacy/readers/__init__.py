"""spaCy corpus readers (registry `readers`): `fillm.JointCorpus.v1`."""
