#!/bin/sh
# PostgreSQL's first start (compose.yaml mounts this into /docker-entrypoint-initdb.d): runs
# deploy/postgres-init.sql with the registry's and the router's passwords from the environment.
set -eu
: "${MLFLOW_DB_PASSWORD:?}" "${ROUTER_DB_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v mlflow_password="$MLFLOW_DB_PASSWORD" -v router_password="$ROUTER_DB_PASSWORD" \
  -f /etc/rollout/postgres-init.sql
