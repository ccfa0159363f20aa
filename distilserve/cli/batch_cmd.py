"""`distilserve batch run|load-cache|schedule`: offline inference and the prediction cache.

    distilserve batch run --model sentiment[:VERSION] --input FILE --output DIR [--cache DB]
    distilserve batch load-cache DIR [DIR ...] --cache .distilserve/predictions.db
    distilserve batch schedule --every 1h --model sentiment --input FILE --output BASE [--once]

`run` resumes when DIR holds a killed run of the same job. `serve` answers /v1/predict from
the cache when its config sets `prediction_cache` (YAML: `prediction_cache: <DB or redis://>`).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from distilserve.cli.admin import CliError
from distilserve.core.names import is_model_name, is_version

DEFAULT_CACHE = Path(".distilserve/predictions.db")
DEFAULT_REGISTRY = Path(".distilserve/registry.db")


def parse_model(text: str) -> tuple[str, str | None]:
    """'sentiment' -> ('sentiment', None); 'sentiment:2' -> ('sentiment', '2')."""
    model, sep, version = text.partition(":")
    if not is_model_name(model) or (sep and not is_version(version)):
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL or MODEL:VERSION, e.g. 'sentiment:2'")
    return model, version if sep else None


def _job_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--model", type=parse_model, default=("sentiment", None), help="MODEL[:VERSION] (default sentiment,"
                   " the live version in --registry, else the newest on disk)")
    p.add_argument("--input", type=Path, required=True, help="parquet, .csv, .jsonl or a saved datasets folder")
    p.add_argument("--output", type=Path, required=True, help="output folder (schedule: base folder of runs)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--split", default=None, help="split of a saved DatasetDict")
    p.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    p.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help="where the live version is read")
    p.add_argument("--backend", choices=["triton", "torch", "serving"], default="triton",
                   help="triton: a tritonserver per actor; torch: the model in the actor; serving: the Triton of a "
                        "running replica of the version (needs --ray-address of the cluster that serves it)")
    p.add_argument("--shard-rows", type=int, default=1024, help="rows per output shard, the unit of resume")
    p.add_argument("--infer-batch", type=int, default=64, help="texts per inference call (max 64)")
    p.add_argument("--inflight", type=int, default=None,
                   help="inference calls in flight per actor; default 1 with --backend serving, 2 otherwise")
    p.add_argument("--max-call-ms", type=float, default=None,
                   help="time budget of one call: calls carry the texts that fit, by the job's measured cost per text "
                        "(at most --infer-batch), which bounds how long live requests wait behind the job; default "
                        "100 with --backend serving, none otherwise; 0: none. It applies while the Triton serves live "
                        "traffic; while only the job uses it, calls are full (see --budget-when-idle)")
    p.add_argument("--budget-when-idle", action="store_true",
                   help="keep the call budget even while the shared Triton serves nobody but the job (then a live "
                        "request after a quiet spell never waits for a full call)")
    p.add_argument("--actors", type=int, default=1, help="actors, each with its own tritonserver")
    p.add_argument("--executor", choices=["auto", "ray", "local"], default="auto",
                   help="ray: Ray Data actors; local: one predictor in this process (one actor's work, no Ray Data); "
                        "auto: local for one actor that would run on this node anyway (--backend serving with the "
                        "replica on this node; a backend of its own without --ray-address: then no Ray at all)")
    p.add_argument("--actor-cpus", type=float, default=1.0)
    p.add_argument("--actor-gpus", type=float, default=0.0)
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--max-rows-per-s", type=float, default=None, help="throttle, to share the machine")
    p.add_argument("--overwrite", action="store_true", help="start over when DIR holds a different job")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--cache", default=None, help="load the predictions into this cache (SQLite file or redis://)")
    p.add_argument("--ray-address", default=None, help="existing Ray cluster (default: a local loopback one)")
    p.add_argument("--ray-temp-dir", default=None, help="temp dir of the local Ray (short path)")
    return p


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="batch inference with Ray Data, the prediction cache, schedules")
    bsub = p.add_subparsers(dest="batch_command", required=True, metavar="WHAT")
    job = _job_options()

    run = bsub.add_parser("run", parents=[job], help="run or resume a batch job")
    run.set_defaults(func=_run)

    load = bsub.add_parser("load-cache", help="load finished batch outputs into the prediction cache")
    load.add_argument("outputs", nargs="+", type=Path, help="batch output folders")
    load.add_argument("--cache", default=str(DEFAULT_CACHE), help="SQLite file or redis:// URL")
    load.set_defaults(func=_load_cache)

    sched = bsub.add_parser("schedule", parents=[job], help="run the job every period (or once, for cron)")
    sched.add_argument("--every", required=True, help="period: 30m, 1h, 1d ...")
    sched.add_argument("--anchor", default=None, help="ISO time slots count from (default 1970-01-01T00:00Z)")
    sched.add_argument("--once", action="store_true", help="run the due slot if not yet done, then exit (cron)")
    sched.set_defaults(func=_schedule)


def _spec(args: argparse.Namespace, output: Path):  # noqa: ANN202 - a JobSpec
    from pydantic import ValidationError

    from serving.batch.job import JobSpec

    model, version = args.model
    try:
        return JobSpec(
            model=model, version=version, input=args.input, output=output, text_column=args.text_column,
            split=args.split, model_repository=args.model_repository,
            registry=args.registry if args.registry and args.registry.is_file() else None,
            backend=args.backend, shard_rows=args.shard_rows, infer_batch=args.infer_batch, inflight=args.inflight,
            max_call_ms=args.max_call_ms, budget_when_idle=args.budget_when_idle,
            actors=args.actors, executor=args.executor, actor_cpus=args.actor_cpus, actor_gpus=args.actor_gpus,
            torch_threads=args.torch_threads, max_rows_per_s=args.max_rows_per_s, overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except ValidationError as e:
        raise CliError(str(e)) from None


def _run_one(args: argparse.Namespace, output: Path) -> dict:
    from serving.batch.cache import load_from, open_cache
    from serving.batch.job import run_job

    spec = _spec(args, output)
    if spec.backend == "serving" and not args.ray_address:
        raise CliError("--backend serving: needs --ray-address of the cluster whose replicas serve the version "
                       "(a local Ray started for this job serves nothing)")
    try:
        manifest = run_job(spec, ray_address=args.ray_address, ray_temp_dir=args.ray_temp_dir)
    except (ValueError, FileNotFoundError) as e:
        raise CliError(str(e)) from None
    summary = {"model": manifest.model, "version": manifest.version, "rows": manifest.rows_done,
               "num_rows": manifest.num_rows, "shards": len(manifest.done), "output": str(output)}
    if args.cache:
        cache = open_cache(args.cache)
        try:
            summary["cached"] = load_from(cache, output)[2]
        finally:
            cache.close()
    return summary


def _run(args: argparse.Namespace) -> int:
    print(json.dumps(_run_one(args, args.output)), flush=True)
    return 0


def _load_cache(args: argparse.Namespace) -> int:
    from serving.batch.cache import load_from, open_cache

    cache = open_cache(args.cache)
    try:
        for out in args.outputs:
            try:
                model, version, n = load_from(cache, out)
            except FileNotFoundError as e:
                raise CliError(str(e)) from None
            print(json.dumps({"output": str(out), "model": model, "version": version, "loaded": n}), flush=True)
    finally:
        cache.close()
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from serving.batch.schedule import EPOCH, Scheduler, parse_every

    try:
        every = parse_every(args.every)
        anchor = datetime.fromisoformat(args.anchor) if args.anchor else EPOCH
    except ValueError as e:
        raise CliError(str(e)) from None
    if anchor.tzinfo is None:
        anchor = anchor.replace(tzinfo=UTC)

    def job(slot: datetime, run_dir: Path) -> None:
        print(json.dumps({"slot": slot.isoformat(), **_run_one(args, run_dir)}), flush=True)

    sched = Scheduler(job, args.output, every, anchor)
    if args.once:
        step = sched.tick()
        if step.slot is None:
            print(json.dumps({"slot": None, "next": step.wake_at.isoformat(), "note": "current slot already done"}))
        return 0
    sched.run_forever()
    return 0
