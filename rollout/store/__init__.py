"""The manager's side of the store (the tables are :mod:`contract.sql.schema`).

- :mod:`~rollout.store.records`      rollouts, their events and release records
- :mod:`~rollout.store.predictions`  the prediction log and labels, read back and folded
- :mod:`~rollout.store.configs`      the config versions of applied specs
- :mod:`~rollout.store.audit`        the keyed (HMAC) hash-chained audit log
- :mod:`~rollout.store.page_samples` a finished rollout's sample for its dashboard page
- :mod:`~rollout.store.packed`       compact JSON for what is kept of pruned rows

Plans (:class:`contract.sql.plans.SqlPlanStore`) and the writers of prediction records and
labels (:mod:`contract.sql.predictions`) belong to the serving contract, which routers share.
"""
