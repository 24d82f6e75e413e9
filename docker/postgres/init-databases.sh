#!/usr/bin/env bash
# First start of the stack's Postgres (an empty volume): one database and one login role per
# consumer, so Airflow's metadata and the dx7lake warehouse cannot read or write each other
# (Metabase keeps its application database in a Postgres of its own). Passwords come from the environment (the .env that
# `make env` writes); nothing here has a default.
set -euo pipefail

create() {  # role, database, password
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v role="$1" -v db="$2" -v pw="$3" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
}

create airflow airflow "${AIRFLOW_DB_PASSWORD:?}"
create warehouse warehouse "${WAREHOUSE_DB_PASSWORD:?}"
