"""Quality gates: the checks a run must pass before its dataset is trusted.

Owns: ``validate`` (bronze vs raw counts, dbt tests, every gold render against its
manifest) and ``audio_qa`` (a render decodes, has the expected length and sounds).
May import: ``config``, ``lake``, ``bronze``, ``warehouse``, ``gold``.
See docs/ARCHITECTURE.md.
"""
