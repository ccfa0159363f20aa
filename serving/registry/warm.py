"""Versions kept deployed without traffic: the idle colour, a candidate about to get traffic."""

from __future__ import annotations

from serving.registry.db import Database


class WarmStore(Database):
    """Mixin of `Registry`."""

    def set_warm(self, model: str, version: str, warm: bool = True, reason: str = "deploy") -> None:
        """Ask for `version` to stay deployed (warm=True) or release it (warm=False)."""
        with self.transaction() as conn:
            if warm:
                self._require_available(conn, model, [version], "warm")
                conn.execute(
                    """INSERT INTO warm (model, version, reason, updated_at) VALUES (?, ?, ?, ?)
                       ON CONFLICT (model, version) DO UPDATE SET reason = excluded.reason,
                       updated_at = excluded.updated_at""",
                    (model, version, reason, self._now()),
                )
            else:
                conn.execute("DELETE FROM warm WHERE model = ? AND version = ?", (model, version))

    def warm_versions(self, model: str) -> list[str]:
        with self._read() as conn:
            rows = conn.execute("SELECT version FROM warm WHERE model = ?", (model,)).fetchall()
        return sorted((r[0] for r in rows), key=int)
