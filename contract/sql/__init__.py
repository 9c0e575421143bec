"""The SQL side of the contract: the store's tables, their migrations, and the SQL twins of
the contract's Protocols (SQLite for the embedded default, PostgreSQL in production).

- :mod:`~contract.sql.schema`       every table of the store (one MetaData)
- :mod:`~contract.sql.migrations`   Alembic revisions; ``upgrade(engine)``
- :mod:`~contract.sql.engine`       ``open_engine(url)``; the router's least-privilege role
- :mod:`~contract.sql.plans`        ``SqlPlanStore`` (a :class:`~contract.plans.PlanStore`)
- :mod:`~contract.sql.predictions`  ``SqlPredictionSink``, ``SqlFeedbackSink``

This package imports SQLAlchemy; the rest of :mod:`contract` does not.
"""
