"""Versions kept deployed without traffic: the idle colour, a candidate about to get traffic."""

from __future__ import annotations

import sqlalchemy as sa

from serving.registry.db import Database
from serving.registry.schema import warm as warm_table
from serving.registry.traffic import version_key


class WarmStore(Database):
    """Mixin of `Registry`."""

    def set_warm(self, model: str, version: str, warm: bool = True, reason: str = "deploy") -> None:
        """Ask for `version` to stay deployed (warm=True) or release it (warm=False)."""
        with self.transaction() as conn:
            if warm:
                self._require_available(conn, model, [version], "warm")
                row = {"model": model, "version": version, "reason": reason, "updated_at": self._now()}
                self._upsert(conn, warm_table, row, ["model", "version"], ["reason", "updated_at"])
            else:
                conn.execute(warm_table.delete().where(warm_table.c.model == model, warm_table.c.version == version))

    def warm_versions(self, model: str) -> list[str]:
        with self._read() as conn:
            found = conn.execute(sa.select(warm_table.c.version).where(warm_table.c.model == model)).scalars().all()
        return sorted(found, key=version_key)
