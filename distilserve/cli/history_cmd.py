"""`distilserve history --model M`: when traffic changed, from what to what, why, and by whom.

Reads the registry file directly (no server needed), oldest first so the newest change is
the last line, as in a log.
"""

from __future__ import annotations

import argparse
import json

from distilserve.cli.versions_cmd import open_registry, registry_options, table, when


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", parents=[registry_options()],
                       help="deployment history: traffic before -> after, reason, actor")
    p.add_argument("--model", default="sentiment")
    p.add_argument("--limit", type=int, default=50, help="newest changes to show (default 50)")
    p.add_argument("--events", action="store_true",
                   help="also list the events (deployed, removed, pruned, traffic, rollout steps)")
    p.set_defaults(func=_history)


def traffic_text(weights: dict[str, float]) -> str:
    """{'1': 90, '2': 10} -> 'v1 90% + v2 10%'; zero shares route nothing and are left out."""
    live = sorted(((v, w) for v, w in weights.items() if w > 0), key=lambda vw: (len(vw[0]), vw[0]))
    return " + ".join(f"v{v} {w:g}%" for v, w in live) or "(none)"


def _history(args: argparse.Namespace) -> int:
    reg = open_registry(args.registry)
    records = list(reversed(reg.history(args.model, limit=args.limit)))
    events = list(reversed(reg.events(args.model, limit=args.limit))) if args.events else []
    if args.json:
        print(json.dumps({"history": [r.model_dump() for r in records],
                          "events": [e.model_dump() for e in events]}, indent=2))
        return 0
    if not records:
        print(f"{args.model}: no traffic changes recorded in {str(args.registry)!r}")
    else:
        print(f"{args.model}: {len(records)} traffic changes (oldest first)")
        rows = [(str(r.id), when(r.ts), traffic_text(r.previous), "->", traffic_text(r.traffic), r.actor, r.reason)
                for r in records]
        print(table(("#", "when", "before", "", "after", "actor", "reason"), rows, right=frozenset({0})))
    if events:
        print(f"\n{args.model}: {len(events)} events (oldest first)")
        rows = [(when(e.ts), e.kind, e.rollout_id or "-", e.message) for e in events]
        print(table(("when", "kind", "rollout", "message"), rows))
    return 0
