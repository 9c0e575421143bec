-- One PostgreSQL server, two databases: MLflow's registry and the rollout store.
CREATE DATABASE mlflow;
CREATE DATABASE rollout;
