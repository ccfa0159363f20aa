"""`distilserve deploy-config`: write the Ray Serve config (and the RayService's copy) from our configs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy-config", help="generate the Ray Serve config / RayService serveConfigV2")
    p.add_argument("--config", type=Path, default=Path("deploy/cluster.yaml"), help="DeployConfig YAML")
    p.add_argument("--out", type=Path, default=None, help="write the Serve config here (default: stdout)")
    p.add_argument("--rayservice", type=Path, default=None,
                   help="also refresh the serveConfigV2 block of this RayService manifest in place")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file differs (CI drift check)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from serving.deploy_config import DeployConfig, embed_in_rayservice, render

    text = render(DeployConfig.load(args.config), args.config.as_posix())
    wanted: dict[Path, str] = {}
    if args.out:
        wanted[args.out] = text
    if args.rayservice:
        wanted[args.rayservice] = embed_in_rayservice(args.rayservice.read_text(), text)
    if not wanted:
        sys.stdout.write(text)
        return 0
    stale = [p for p, t in wanted.items() if not p.is_file() or p.read_text() != t]
    if args.check:
        for p in stale:
            print(f"distilserve: {p} is out of date; run `distilserve deploy-config` to regenerate it", file=sys.stderr)
        return 1 if stale else 0
    for p, t in wanted.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(t)
        print(f"wrote {p}")
    return 0
