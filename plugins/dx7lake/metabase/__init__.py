"""Analytics: the Metabase dashboards as code.

Owns: ``dashboards.yml`` (cards and dashboards over dbt marts), ``spec`` (its parser) and
``provision`` (an idempotent push to a Metabase server).
May import: ``config``, ``warehouse`` (the connection it hands Metabase).
See docs/ARCHITECTURE.md.
"""
