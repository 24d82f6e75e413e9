"""The phrase browser: every gold render, playable and drawn, in the Airflow UI or on its own.

``app.create_app`` builds the FastAPI app that ``dx7lake_plugin`` mounts in Airflow's API
server and ``dx7lake serve`` runs alone. Phrases are numbered in the warehouse
(``catalog``); audio is read from the lake only by keys found in gold manifests.

Owns: the app, ``browser.phrases`` rows (its table is defined in ``warehouse.schema``).
Reads only contracted silver columns (the ``phrase_browser`` dbt exposure).
May import: ``config``, ``lake``, ``warehouse``, ``gold``. See docs/ARCHITECTURE.md.
"""
