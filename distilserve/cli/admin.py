"""Commands that drive a running server over its admin API (bearer token)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import httpx

TOKEN_FILE = Path(".distilserve/admin_token")


class CliError(RuntimeError):
    """A command failed in a way the user can act on."""


def token(explicit: str | None = None) -> str:
    tok = explicit or os.environ.get("DISTILSERVE_ADMIN_TOKEN")
    if not tok and TOKEN_FILE.is_file():
        tok = TOKEN_FILE.read_text().strip()
    if not tok:
        raise CliError("no admin token: pass --token, set DISTILSERVE_ADMIN_TOKEN, or run from the serve folder")
    return tok


def request(args: argparse.Namespace, method: str, path: str, body: dict | None = None, timeout: float = 60.0) -> dict:
    url = args.url.rstrip("/") + path
    try:
        r = httpx.request(method, url, json=body, timeout=timeout,
                          headers={"Authorization": f"Bearer {token(args.token)}"})
    except httpx.HTTPError as e:
        raise CliError(f"{method} {url}: {e}") from None
    try:
        data = r.json()
    except ValueError:
        data = {"error": r.text}
    if r.status_code >= 400:
        raise CliError(f"{method} {path} -> {r.status_code}: {data.get('error', data)}")
    return data


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("DISTILSERVE_URL", "http://127.0.0.1:8000"))
    p.add_argument("--token", default=None, help="admin token (default: $DISTILSERVE_ADMIN_TOKEN or .distilserve/admin_token)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollback", help="put the previously live version back")
    p.add_argument("--model", default="sentiment")
    p.add_argument("--to-version", default=None)
    p.add_argument("--reason", default="rollback from CLI")
    add_common(p)
    p.set_defaults(func=_rollback)

    p = sub.add_parser("traffic", help="set a model's traffic split, e.g. --set 1=90 2=10")
    p.add_argument("--model", default="sentiment")
    p.add_argument("--set", nargs="+", required=True, metavar="VERSION=PERCENT")
    p.add_argument("--reason", default="set from CLI")
    add_common(p)
    p.set_defaults(func=_traffic)

    p = sub.add_parser("status", help="traffic, versions and history of a model")
    p.add_argument("--model", default="sentiment")
    add_common(p)
    p.set_defaults(func=_status)


def _rollback(args: argparse.Namespace) -> int:
    body: dict = {"reason": args.reason}
    if args.to_version:
        body["to_version"] = args.to_version
    out = request(args, "POST", f"/admin/models/{args.model}/rollback", body)
    print(f"{args.model}: traffic {out['previous']} -> {out['traffic']}")
    return 0


def _traffic(args: argparse.Namespace) -> int:
    weights = {}
    for item in args.set:
        version, sep, pct = item.partition("=")
        if not sep:
            raise CliError(f"--set takes VERSION=PERCENT, got {item!r}")
        try:
            weights[version] = float(pct)
        except ValueError:
            raise CliError(f"--set: percent of {version!r} must be a number, got {pct!r}") from None
    out = request(args, "POST", f"/admin/models/{args.model}/traffic", {"weights": weights, "reason": args.reason})
    print(f"{args.model}: traffic {out['previous']} -> {out['traffic']}")
    return 0


def _status(args: argparse.Namespace) -> int:
    print(json.dumps(request(args, "GET", f"/admin/models/{args.model}"), indent=2))
    return 0
