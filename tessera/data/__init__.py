"""Training data: a user's folders and manifests (`folder.py`), index-addressed sources over them and
over the world engine (`source.py`), and the bucketing that fits clips to training shapes (`buckets.py`)."""
