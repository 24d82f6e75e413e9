"""The phrase browser: every gold render, playable and drawn, in the Airflow UI or on its own.

``app.create_app`` builds the FastAPI app that ``dx7lake_plugin`` mounts in Airflow's API
server and ``dx7lake serve`` runs alone. Phrases are numbered in the warehouse
(``catalog``); audio is read from the lake only by keys found in gold manifests.
"""
