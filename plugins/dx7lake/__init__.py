"""dx7lake: MIDI corpora to a rendered, analysed, ML-ready DX7 audio dataset.

The package holds all pipeline logic; the Airflow DAG in ``dags/`` only wires these
functions together, so every stage also runs from the ``dx7lake`` CLI and from tests.

Layers: ``bronze`` → ``warehouse`` (raw, ops; dbt builds silver) → ``gold``, checked by
``quality``, shown by ``browser`` and ``metabase``; ``config`` and ``lake`` under them all,
``stages``, ``cli`` and ``orchestration`` over them. docs/ARCHITECTURE.md is the map.
"""

__version__ = "0.1.0"
