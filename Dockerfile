# One image for the routers, the manager, the API and `mlflow server`; `rollout <subcommand>`
# picks the role (compose.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    ROLLOUT_HOME=/var/lib/rollout
WORKDIR /app

COPY pyproject.toml README.md ./
COPY contract ./contract
COPY rollout ./rollout
COPY router ./router
COPY monitors ./monitors
RUN pip install ".[postgres]"

# Least privilege: the processes never need root. What they write belongs to their user; a
# named volume mounted on one of these directories starts with its owner and mode:
#   /var/lib/rollout   ROLLOUT_HOME: the step reports (reports/), smoke payloads, environments
#   /artifacts         `mlflow server --artifacts-destination`: the model artifacts
#   /audit             the audit chain's head (ROLLOUT_AUDIT_HEAD_FILE)
RUN useradd --system --uid 10001 --home-dir /app rollout \
 && mkdir -p /var/lib/rollout/reports /artifacts /audit \
 && chown -R rollout:rollout /var/lib/rollout /artifacts /audit \
 && chmod 0750 /var/lib/rollout /artifacts /audit
USER rollout

ENTRYPOINT ["rollout"]
CMD ["--help"]
