"""The store: everything several processes must agree on (see DESIGN.md, "The pieces").

Tables live in :mod:`rollout.store.schema`; each module here is one concern:

- :mod:`~rollout.store.engine` opens SQLite (WAL, busy timeout) or PostgreSQL by URL;
- :mod:`~rollout.store.plans` the traffic plans (written by the manager, read by routers);
- :mod:`~rollout.store.predictions` the prediction log and delayed labels (written by routers);
- :mod:`~rollout.store.records` rollouts, their events and release records (the manager's);
- :mod:`~rollout.store.configs` the config versions of applied specs.

The schema is created and upgraded by Alembic (:mod:`rollout.migrations`) when a store is opened.
"""

from rollout.store.engine import open_engine
from rollout.store.plans import TrafficPlan, TrafficPlanStore
from rollout.store.predictions import Feedback, PredictionLog, PredictionRecord

__all__ = [
    "Feedback",
    "PredictionLog",
    "PredictionRecord",
    "TrafficPlan",
    "TrafficPlanStore",
    "open_engine",
]
