"""A rollout timeline: traffic percent per version over time, with the rollout's events marked.

`traffic_series` is pure (history records -> step series per version); `draw_timeline` renders a
PNG with matplotlib's Agg backend. Both take plain dicts (the admin status JSON) or registry
records, so the CLI can draw what a remote server reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_SHOWN_KINDS = ("rollout.",)


def _get(record: Any, key: str) -> Any:
    return record[key] if isinstance(record, Mapping) else getattr(record, key)


def traffic_series(
    history: Iterable[Any], until: float | None = None
) -> tuple[float, dict[str, tuple[list[float], list[float]]]]:
    """(t0, {version: (seconds since t0, percent)}) as step series, oldest change first.

    Every version appears from the first change on (0 % until it gets traffic); the last value
    is carried to `until` (default: the last change) so a final state has a visible width.
    """
    changes = sorted(history, key=lambda h: _get(h, "ts"))
    if not changes:
        return 0.0, {}
    t0 = float(_get(changes[0], "ts"))
    versions = sorted({v for h in changes for v in _get(h, "traffic")}, key=lambda v: (len(v), v))
    series: dict[str, tuple[list[float], list[float]]] = {v: ([], []) for v in versions}
    for h in changes:
        t, traffic = float(_get(h, "ts")) - t0, _get(h, "traffic")
        for v in versions:
            series[v][0].append(t)
            series[v][1].append(float(traffic.get(v, 0.0)))
    end = (until if until is not None else float(_get(changes[-1], "ts"))) - t0
    for xs, ys in series.values():
        if end > xs[-1]:
            xs.append(end)
            ys.append(ys[-1])
    return t0, series


def draw_timeline(history: Sequence[Any], events: Sequence[Any], out: Path, title: str = "rollout") -> Path:
    """Write a PNG of traffic % per version over time, with a marker per rollout event."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [e for e in events if str(_get(e, "kind")).startswith(_SHOWN_KINDS)]
    last = max([float(_get(h, "ts")) for h in history] + [float(_get(e, "ts")) for e in shown], default=None)
    first = min((float(_get(h, "ts")) for h in history), default=0.0)
    # A little room after the last change so the final split has a visible width.
    t0, series = traffic_series(history, until=None if last is None else last + max(1.0, 0.03 * (last - first)))
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    for version, (xs, ys) in series.items():
        ax.step(xs, ys, where="post", linewidth=2, label=f"v{version}")
    for i, e in enumerate(shown):
        t = float(_get(e, "ts")) - t0
        kind = str(_get(e, "kind")).removeprefix("rollout.")
        message = str(_get(e, "message"))
        bad = kind == "rollback" or message.startswith(("rolled_back", "aborted"))
        good = kind in ("promote", "promote_winner") or message.startswith("promoted")
        color = "tab:red" if bad else "tab:green" if good else "0.5"
        ax.axvline(t, color=color, linestyle=":", linewidth=1)
        ax.annotate(kind, (t, 102 - 9 * (i % 4)), fontsize=7, rotation=0, ha="left", va="top", color=color)
    ax.set_ylim(-2, 105)
    ax.set_xlabel("seconds since the first traffic change shown")
    ax.set_ylabel("traffic %")
    ax.set_title(title)
    ax.legend(loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out
