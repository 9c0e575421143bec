"""The manager's side of the store (the tables are :mod:`contract.sql.schema`).

- :mod:`~rollout.store.records`      rollouts, their events and release records
- :mod:`~rollout.store.predictions`  the prediction log and labels, read back and folded
- :mod:`~rollout.store.configs`      the config versions of applied specs
- :mod:`~rollout.store.audit`        the keyed (HMAC) hash-chained audit log

Plans (:class:`contract.sql.plans.SqlPlanStore`) and the writers of prediction records and
labels (:mod:`contract.sql.predictions`) belong to the serving contract, which routers share.
"""
