"""Releases: the dataset as ML users take it, written from gold and silver.

A release is an immutable folder ``<lake>/releases/<name>/``: per split (train, validation,
test) Parquet shards that Hugging Face ``datasets`` loads with its ``Audio`` feature and
WebDataset tar shards with the same examples, a dataset card (``README.md``), previews and
plots, and ``release.json`` (every shard with its sha256 and row count). ``release.json``
is written last: a folder without it is not a release (a build killed halfway), and readers
(:mod:`dx7lake.dataset`) refuse it.

May import: ``config``, ``lake``, ``gold`` (manifest layout and voices); silver arrives as
rows through the connection the caller passes. docs/ARCHITECTURE.md, "Layers and packages".
"""

from .build import RELEASES, ReleaseExists, build_release, read_release

__all__ = ["RELEASES", "ReleaseExists", "build_release", "read_release"]
