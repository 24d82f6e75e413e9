"""Warehouse layer: the Postgres database, its raw/gold/ops tables, and dbt.

Owns: the connection (``postgres``: embedded pgserver or ``DX7LAKE_PG_URL``), the tables
Python writes (``load``: ``raw`` bronze copy, ``gold`` manifests; ``stats``: ``ops`` run
figures), and running the dbt project (``transform``) that builds ``silver`` and marts.
May import: ``config``, ``lake``, ``bronze`` (the bronze schema it copies). Never ``gold``,
``quality``, ``browser``, ``metabase`` or ``orchestration``.
See docs/ARCHITECTURE.md.
"""
