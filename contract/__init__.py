"""The serving contract: what the router and the manager share, and nothing more.

The router (:mod:`router`) serves traffic as the manager's plans say and records what it
served; the manager (:mod:`rollout`) writes the plans and reads the records. Both import this
package, and it imports neither, nor numpy, scipy or pandas; only :mod:`contract.sql` imports
SQLAlchemy and only :mod:`contract.mlflow` imports MLflow.

- :mod:`~contract.names`     arms, reply headers, limits
- :mod:`~contract.plans`     ``TrafficPlan``; ``PlanSource`` / ``PlanStore``; in-memory twin
- :mod:`~contract.records`   ``PredictionRecord``, ``Feedback``; ``PredictionSink``,
  ``FeedbackSink``; in-memory twin; ``parse_feedback``
- :mod:`~contract.registry`  ``ModelVersionInfo``; ``RegistryReader``; in-memory twin
- :mod:`~contract.notify`    ``Notification``; ``Notifier``; in-memory twin
- :mod:`~contract.clock`     ``Clock``: the system clock and a manual one
- :mod:`~contract.errors`    the named errors and their HTTP statuses
- :mod:`~contract.places`    where the registry, the store and the data directory are
- :mod:`~contract.sql`       the store's tables and migrations, and the SQL twins
- :mod:`~contract.mlflow`    the MLflow registry reader

Why a package of its own: the router runs in every request's path and holds a least-privilege
database role; depending on a small contract instead of the manager keeps it light (no scipy,
no monitors) and makes that boundary visible in the code (docs/architecture.md).
"""
