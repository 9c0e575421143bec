-- One PostgreSQL server, two databases: MLflow's registry and the rollout store.
CREATE DATABASE mlflow;
CREATE DATABASE rollout;

-- The router's own login: once the manager has migrated the store (migration 0006), it may
-- read traffic plans and write prediction records and labels, and nothing else.
CREATE ROLE rollout_router LOGIN PASSWORD 'router';
