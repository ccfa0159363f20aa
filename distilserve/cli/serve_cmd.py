"""`distilserve serve`: build the default model if it is missing, then serve it in the foreground
(`distilserve up` runs the same as a daemon)."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
from pathlib import Path

from distilserve.core.card import CARD_FILENAME

log = logging.getLogger("distilserve")

TOKEN_FILE = Path(".distilserve/admin_token")


def add_stack_arguments(p: argparse.ArgumentParser) -> None:
    """The flags `serve`, `up` and `deploy` share: what to serve, and where."""
    p.add_argument("--config", type=Path, help="YAML ServeConfig")
    p.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ["PORT"]) if os.environ.get("PORT") else None)
    p.add_argument("--grpc-port", type=int, default=None,
                   help="Open Inference Protocol over gRPC on the listen address (default 8001; 0 turns it off)")
    p.add_argument("--model-repository", type=Path, default=None)
    # Text, not Path: pathlib folds the '//' of a postgresql:// URL (ServeConfig makes paths Paths).
    p.add_argument("--registry", default=None, help="SQLite registry file or postgresql:// URL")
    p.add_argument("--backend", choices=["triton", "torch"], default=None)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the models of a repository on 127.0.0.1 until Ctrl-C")
    add_stack_arguments(p)
    p.add_argument("--no-build", action="store_true", help="do not train the default model when it is missing")
    p.add_argument("--quick-build", action="store_true", help="build a tiny demo model instead of the real teacher")
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace, **overrides: object):  # noqa: ANN201 - a ServeConfig (import kept lazy)
    """The ServeConfig of the flags, with the admin token filled in (generated on first use)."""
    from pydantic import SecretStr

    from serving.config import ServeConfig

    cfg = ServeConfig.load(
        args.config, host=args.host, port=args.port, grpc_port=getattr(args, "grpc_port", None),
        model_repository=args.model_repository,
        registry=args.registry, backend=args.backend, **overrides,
    )
    current = cfg.admin_token.get_secret_value() if cfg.admin_token else None
    return cfg.model_copy(update={"admin_token": SecretStr(admin_token(current))})


def check_grpc_port_free(cfg) -> None:  # noqa: ANN001 - a ServeConfig
    """Refuse a gRPC port something already listens on (the listener itself shares it with
    SO_REUSEPORT between ingress replicas, so it cannot tell another server from a sibling)."""
    from distilserve.cli.admin import CliError
    from serving.http_server import PortInUseError, check_port_free

    if cfg.grpc_port:
        try:
            check_port_free(cfg.host, cfg.grpc_port)
        except PortInUseError:
            raise CliError(f"grpc_port: {cfg.host}:{cfg.grpc_port} is already in use; pick another with "
                           f"--grpc-port (0 turns gRPC off)") from None


def build_missing_default(cfg, no_build: bool, quick: bool) -> None:  # noqa: ANN001 - a ServeConfig
    if not no_build and "sentiment" in cfg.models:
        ensure_default_model(Path(cfg.model_repository), "sentiment", quick)


def admin_token(cfg_token: str | None) -> str:
    """The configured token, or a generated one kept in .distilserve/admin_token (mode 600)."""
    if cfg_token:
        return cfg_token
    if TOKEN_FILE.is_file():
        return TOKEN_FILE.read_text().strip()
    TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def ensure_default_model(repository: Path, model: str, quick: bool) -> None:
    """Train and export the teacher as version 1 when the model has no version yet."""
    model_dir = repository / model
    if any(p.name.isdigit() and (p / CARD_FILENAME).is_file() for p in model_dir.iterdir()):
        return
    from distill.teacher import TeacherConfig, run_teacher

    cfg = TeacherConfig.quick_defaults() if quick else TeacherConfig()
    log.info("model %r has no version yet: building it (%s recipe)", model, "quick" if quick else "full teacher")
    path, card = run_teacher(cfg, repository, model)
    log.info("built %s: accuracy %.4f", path, card.accuracy)


def run(args: argparse.Namespace) -> int:
    from serving.stack import serve_forever

    cfg = load_config(args)
    check_grpc_port_free(cfg)
    build_missing_default(cfg, args.no_build, args.quick_build)
    serve_forever(cfg)
    return 0
