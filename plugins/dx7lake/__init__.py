"""dx7lake: MIDI corpora to a rendered, analysed, ML-ready DX7 audio dataset.

The package holds all pipeline logic; the Airflow DAG in ``dags/`` only wires these
functions together, so every stage also runs from the ``dx7lake`` CLI and from tests.
"""

__version__ = "0.1.0"
