# One image for the router and the manager; `rollout <subcommand>` picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY rollout ./rollout
COPY router ./router
COPY monitors ./monitors
RUN pip install ".[postgres]"

# Least privilege: the processes never need root.
RUN useradd --system --uid 10001 --home-dir /app rollout
USER rollout

ENTRYPOINT ["rollout"]
CMD ["--help"]
