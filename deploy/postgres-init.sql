-- One PostgreSQL server, two databases: MLflow's registry and the rollout store, each with its
-- own login. Run once by deploy/postgres-init.sh (PostgreSQL's first start in compose.yaml),
-- which passes the passwords from .env as psql variables: none is written here.
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE rollout;

-- The router's own login: once the manager has migrated the store (migration 0006), it may
-- read traffic plans and write prediction records and labels, and nothing else.
CREATE ROLE rollout_router LOGIN PASSWORD :'router_password';
