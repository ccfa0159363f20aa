"""`distilserve versions list|show|diff`: read the registry directly."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from distilserve.cli.admin import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("versions", help="versions of a model and their lineage")
    p.add_argument("--registry", type=Path, default=Path(".distilserve/registry.db"))
    p.add_argument("--repo", type=Path, default=Path("model_repository"),
                   help="versions found here are registered first")
    vsub = p.add_subparsers(dest="versions_command", required=True, metavar="WHAT")
    ls = vsub.add_parser("list")
    ls.add_argument("model", nargs="?", default="sentiment")
    ls.set_defaults(func=_list)
    show = vsub.add_parser("show")
    show.add_argument("model")
    show.add_argument("version")
    show.set_defaults(func=_show)
    diff = vsub.add_parser("diff")
    diff.add_argument("model")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.set_defaults(func=_diff)


def _registry(args: argparse.Namespace, model: str):  # noqa: ANN202
    from serving.registry import Registry
    from serving.runner import register_repository

    args.registry.parent.mkdir(parents=True, exist_ok=True)
    reg = Registry(args.registry)
    register_repository(reg, args.repo, model)
    return reg


def _list(args: argparse.Namespace) -> int:
    reg = _registry(args, args.model)
    traffic = reg.get_traffic(args.model)
    print(f"{'version':>7}  {'kind':8} {'status':9} {'traffic':>7}  {'accuracy':>8}  {'b1 p50 ms':>9}  {'params':>11}  created")
    for v in reg.list_versions(args.model):
        b1 = v.card.latency_at(1)
        print(f"{v.version:>7}  {v.card.kind:8} {v.status:9} {traffic.get(v.version, 0):>6.1f}%  "
              f"{v.card.accuracy:>8.4f}  {b1.p50_ms if b1 else float('nan'):>9.2f}  {v.card.parameters:>11,}  {v.card.created_at}")
    return 0


def _show(args: argparse.Namespace) -> int:
    rec = _registry(args, args.model).get_version(args.model, args.version)
    if rec is None:
        raise CliError(f"model {args.model!r} has no version {args.version!r}")
    print(json.dumps(rec.model_dump(mode="json"), indent=2))
    return 0


def _diff(args: argparse.Namespace) -> int:
    reg = _registry(args, args.model)
    for v in (args.a, args.b):
        if reg.get_version(args.model, v) is None:
            raise CliError(f"model {args.model!r} has no version {v!r}")
    print(reg.diff(args.model, args.a, args.b).render())
    return 0
