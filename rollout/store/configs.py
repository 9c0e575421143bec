"""Config versions: every distinct rollout spec applied to (environment, model), numbered.

``rollout apply`` records the spec it was given here; the same spec again (same
:func:`~rollout.spec.config_hash`) is the same config version, a changed one the next version.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from contract.clock import SYSTEM_CLOCK, Clock
from contract.sql.schema import rollout_configs


@dataclass(frozen=True)
class ConfigVersion:
    environment: str
    model: str
    version: int
    config_hash: str
    spec: str  # canonical JSON
    created_at: float
    created_by: str


class ConfigStore:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.engine = engine

    def find(self, environment: str, model: str, config_hash: str) -> ConfigVersion | None:
        with self.engine.connect() as conn:
            return _find(conn, environment, model, config_hash)

    def record(
        self, environment: str, model: str, config_hash: str, spec: str, actor: str
    ) -> tuple[ConfigVersion, bool]:
        """The config version of this spec, and whether it was created now."""
        for _ in range(3):
            try:
                with self.engine.begin() as conn:
                    found = _find(conn, environment, model, config_hash)
                    if found is not None:
                        return found, False
                    latest = conn.execute(
                        select(func.max(rollout_configs.c.version)).where(
                            rollout_configs.c.environment == environment,
                            rollout_configs.c.model == model,
                        )
                    ).scalar()
                    created = ConfigVersion(
                        environment=environment,
                        model=model,
                        version=int(latest or 0) + 1,
                        config_hash=config_hash,
                        spec=spec,
                        created_at=self.clock.time(),
                        created_by=actor,
                    )
                    conn.execute(rollout_configs.insert().values(**created.__dict__))
                    return created, True
            except IntegrityError:
                continue  # someone applied at the same moment: read theirs
        raise RuntimeError(f"could not record a config version for {model} in {environment}")

    def versions(self, environment: str, model: str) -> list[ConfigVersion]:
        """Newest first."""
        query = (
            select(rollout_configs)
            .where(rollout_configs.c.environment == environment, rollout_configs.c.model == model)
            .order_by(rollout_configs.c.version.desc())
        )
        with self.engine.connect() as conn:
            return [_config(row._mapping) for row in conn.execute(query)]


def _find(conn: Connection, environment: str, model: str, config_hash: str) -> ConfigVersion | None:
    row = conn.execute(
        select(rollout_configs).where(
            rollout_configs.c.environment == environment,
            rollout_configs.c.model == model,
            rollout_configs.c.config_hash == config_hash,
        )
    ).first()
    return _config(row._mapping) if row is not None else None


def _config(row: object) -> ConfigVersion:
    values = {k: v for k, v in dict(row).items() if k != "id"}  # type: ignore[call-overload]
    return ConfigVersion(**values)
