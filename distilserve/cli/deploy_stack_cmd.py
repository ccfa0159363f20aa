"""`distilserve deploy --ray-address ADDR`: the controller and ingress applications onto a Ray
cluster that is already running; the controller then deploys and rolls out versions there.
Nothing keeps running in this process (the cluster's form of `distilserve up`)."""

from __future__ import annotations

import argparse

from distilserve.cli.serve_cmd import add_stack_arguments, load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="deploy the ingress and controller to an existing Ray cluster")
    p.add_argument("--ray-address", required=True, help="the cluster, e.g. ray://head:10001 or 10.0.0.5:6379")
    add_stack_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args, ray_address=args.ray_address)
    import ray

    from serving.stack import start_ray, start_stack

    start_ray(cfg)
    try:
        start_stack(cfg)
    finally:
        ray.shutdown()  # only this driver's connection: the applications stay on the cluster
    print(f"distilserve: ingress and controller deployed to {args.ray_address} (serving {cfg.models})")
    return 0
