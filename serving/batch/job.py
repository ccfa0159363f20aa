"""`distilserve batch run`: offline inference over a data set with Ray Data, resumable.

The driver reads the text column (parquet, CSV, JSON lines or a saved `datasets` folder),
keys every row by sha256 of its text, and cuts the rows into the shards of
`serving.batch.shards`. Only the shards the manifest in DIR does not list become Ray Data
blocks; `map_batches` sends each block to a pool of actors, each owning the same backend
online serving uses (by default a private tritonserver serving exactly this version, see
`serving.backends`). The driver writes each finished shard atomically and then records it
in the manifest, so a job killed at any point and started again ends with every row once.

With one actor whose work could only run on the driver's own node (`--backend serving` with the
chosen replica's Triton on this node, or a private backend when the job would start a Ray of its
own), the actor buys nothing but its start-up: the `local` executor then runs the same Predictor
in the driver, shard after shard, and a job with its own backend starts no Ray at all
(`choose_executor`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from distilserve.core.names import MODEL_PATTERN, VERSION_PATTERN
from serving.batch import shards as sh
from serving.batch.call_size import CallSizer, LiveWatch

log = logging.getLogger("distilserve.batch")

OUTPUT_SCHEMA = pa.schema([
    ("row_id", pa.int64()), ("input_key", pa.string()), ("model", pa.string()), ("version", pa.string()),
    ("label", pa.string()), ("scores", pa.list_(pa.float32())),
])


class JobSpec(BaseModel):
    """One batch job; the CLI flags map 1:1 onto these fields."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=MODEL_PATTERN, description="Model name.")
    version: str | None = Field(default=None, pattern=VERSION_PATTERN,
                                description="Version; None = the live one in the registry, else the newest on disk.")
    input: Path = Field(description="Parquet file/folder, .csv, .jsonl/.json (JSON lines) or a saved datasets folder.")
    output: Path = Field(description="Folder for shard parquet files and _manifest.json.")
    text_column: str = Field(default="text", min_length=1, description="Column holding the texts.")
    split: str | None = Field(default=None, description="Split of a saved DatasetDict.")
    model_repository: Path = Field(default=Path("model_repository"), description="Triton model repository.")
    registry: Path | None = Field(default=None, description="Registry used to find the live version.")
    backend: Literal["triton", "torch", "serving"] = Field(
        default="triton", description="Same backends as online serving; 'serving' uses the Triton of a running "
                                      "replica of the version instead of starting one (see serving_endpoint).")
    shard_rows: int = Field(default=1024, ge=1, le=10_000_000, description="Rows per output shard (resume unit).")
    infer_batch: int = Field(default=64, ge=1, le=64, description="Texts per inference call (Triton max is 64).")
    inflight: int | None = Field(
        default=None, ge=1, le=64,
        description="Inference calls in flight per actor. None: 1 with --backend serving (a live request then waits "
                    "for at most the one running call of the job), 2 otherwise (the next call waits inside the "
                    "backend while one runs).")
    max_call_ms: float | None = Field(
        default=None, ge=0, le=60_000,
        description="Time budget of one inference call: each call carries the texts that fit, from the job's own "
                    "measured cost per text (serving/batch/call_size.py), at most infer_batch. It bounds how long a "
                    "live request waits behind the job on a shared Triton. None: 100 ms with --backend serving, "
                    "no budget otherwise; 0: no budget. It applies while the Triton serves live traffic (and 5 s "
                    "after); while only the job uses it, calls are full unless budget_when_idle.")
    budget_when_idle: bool = Field(
        default=False,
        description="Keep the call budget while the shared Triton serves nobody but the job. By default the job "
                    "then sends full calls (the model's own speed), and a live request arriving after a quiet "
                    "spell may wait for one full call before the job shrinks its calls.")
    actors: int = Field(default=1, ge=1, le=1024, description="Actors, each with its own backend process.")
    executor: Literal["auto", "ray", "local"] = Field(
        default="auto", description="ray: Ray Data actors; local: one Predictor in the driver (no Ray Data, and no "
                                    "Ray at all unless the backend is 'serving'); auto: local only where a Ray actor "
                                    "would run on the driver's node anyway (see choose_executor).")
    actor_cpus: float = Field(default=1.0, gt=0, description="CPUs Ray reserves per actor.")
    actor_gpus: float = Field(default=0.0, ge=0, description="GPUs per actor (fractions allowed).")
    torch_threads: int | None = Field(default=None, ge=1, le=256, description="torch threads per model process.")
    max_rows_per_s: float | None = Field(default=None, gt=0,
                                         description="Throttle (all actors together) so a job shares a machine.")
    overwrite: bool = Field(default=False, description="Start over when DIR holds a different job.")
    progress: bool = Field(default=True, description="Show a progress bar.")


# ---- input --------------------------------------------------------------------------------
def read_texts(path: Path, text_column: str = "text", split: str | None = None) -> list[str]:
    """The text column of a parquet / CSV / JSON-lines file or a saved `datasets` folder, in order."""
    path = Path(path)
    table = _read_table(path, text_column, split)
    if text_column not in table.column_names:
        raise ValueError(f"text_column: {path} has no column {text_column!r}; columns: {table.column_names}")
    col = table.column(text_column)
    if col.null_count:
        raise ValueError(f"text_column: {col.null_count} rows of {text_column!r} in {path} are null")
    return [str(x) for x in col.to_pylist()]


def _read_table(path: Path, column: str, split: str | None) -> pa.Table:
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"split: {path} is a DatasetDict; pass one of {sorted(ds)} (got {split!r})")
            ds = ds[split]
        return ds.select_columns([column]).data.table if column in ds.column_names else ds.data.table
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".parquet", ".pq"):
        return pq.read_table(path, columns=[column]) if _has_column(path, column) else pq.read_table(path)
    if suffix in (".csv", ".tsv"):
        parse = pcsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",", newlines_in_values=True)
        return pcsv.read_csv(path, parse_options=parse,
                             convert_options=pcsv.ConvertOptions(column_types={column: pa.string()}))
    if suffix in (".jsonl", ".json", ".ndjson"):
        return pjson.read_json(path)
    raise ValueError(f"input: {path} is not parquet, .csv, .jsonl or a saved datasets folder")


def _has_column(path: Path, column: str) -> bool:
    import pyarrow.dataset as pds

    return column in pds.dataset(path, format="parquet").schema.names


# ---- version --------------------------------------------------------------------------------
def resolve_version(repository: Path, model: str, version: str | None, registry: Path | None) -> str:
    """The given version, else the one with the most traffic in the registry, else the newest on disk."""
    from distilserve.core.card import CARD_FILENAME

    model_dir = Path(repository) / model
    on_disk = sorted((p.name for p in model_dir.glob("[1-9]*") if (p / CARD_FILENAME).is_file()), key=int) \
        if model_dir.is_dir() else []
    if version is None and registry is not None and Path(registry).is_file():
        from serving.registry import Registry
        from serving.traffic_table import TrafficTable

        reg = Registry(registry)
        try:
            version = TrafficTable(weights=reg.get_traffic(model)).primary
        finally:
            reg.close()
    if version is None and on_disk:
        version = on_disk[-1]
    if version is None or version not in on_disk:
        raise ValueError(f"model: {model}:{version} is not in {repository} (versions on disk: {on_disk})")
    return version


# ---- the actor ------------------------------------------------------------------------------
class Predictor:
    """Ray Data actor: one backend (a private tritonserver, or the model in-process) per actor."""

    def __init__(self, repository: str, model: str, version: str, backend: str, torch_threads: int | None,
                 gpu: bool, infer_batch: int, inflight: int, max_rows_per_s: float | None,
                 endpoint: str | None = None, max_call_ms: float | None = None,
                 budget_when_idle: bool = False) -> None:
        from serving.backends import make_backend

        self.model, self.version = model, version
        kw: dict = {"endpoint": endpoint} if backend == "serving" else {"gpu": gpu, "torch_threads": torch_threads}
        if backend == "triton":  # once the job is done its own Triton holds nothing: no 2.5 s graceful exit
            kw["stop_grace_s"] = 0.0
        self.backend = make_backend(backend, Path(repository), model, version, **kw)
        self.inflight, self.rate = inflight, max_rows_per_s
        self.sizer = CallSizer(max_texts=infer_batch, max_call_ms=max_call_ms)
        # Full calls while nobody else uses a shared Triton (call_size.py, LiveWatch).
        watched = max_call_ms is not None and not budget_when_idle and hasattr(self.backend, "requests_served")
        self.watch, self.own_calls, self.full_calls = (LiveWatch() if watched else None), 0, False
        self._sampling: asyncio.Future | None = None  # a statistics read under way
        self.loop = asyncio.new_event_loop()  # one loop for the actor's life: the gRPC client lives on it
        self.t0, self.rows = time.monotonic(), 0

    def __call__(self, block: pa.Table) -> pa.Table:
        texts = block.column("text").to_pylist()
        results = self.loop.run_until_complete(self._infer_all(texts))
        labels = [label for _, lab in results for label in lab]
        scores = [row.tolist() for probs, _ in results for row in probs]
        n = len(texts)
        return pa.Table.from_pydict({
            "shard": block.column("shard"), "row_id": block.column("row_id"), "input_key": block.column("input_key"),
            "model": [self.model] * n, "version": [self.version] * n, "label": labels,
            "scores": pa.array(scores, type=pa.list_(pa.float32())),
        })

    async def _infer_all(self, texts: list[str]) -> list:
        """(probabilities, labels) of consecutive calls covering `texts` in order, `inflight` at a time,
        each sized when it is sent (`CallSizer`)."""
        calls: list[asyncio.Task] = []
        pending: set[asyncio.Task] = set()
        pos = 0
        try:
            while pos < len(texts) or pending:
                while pos < len(texts) and len(pending) < self.inflight:
                    await self._watch_live()
                    quiet = self.watch is not None and not self.watch.live(time.monotonic())
                    if quiet != self.full_calls:
                        self.full_calls = quiet
                        log.info("%s v%s: %s", self.model, self.version, "nobody else uses the Triton: full calls"
                                 if quiet else "live traffic on the Triton: calls within the budget")
                    chunk = texts[pos: pos + self.sizer.size(full=quiet)]
                    pos += len(chunk)
                    calls.append(task := asyncio.ensure_future(self._one(chunk)))
                    pending.add(task)
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a failed call raises here
        finally:
            for task in pending:  # a failed call ends the block; its siblings are not left running
                task.cancel()
        return [task.result() for task in calls]

    async def _watch_live(self) -> None:
        """Read the Triton's served-request count for `LiveWatch` once an interval. The first read comes
        before the job's first call and is awaited; later ones run beside the job's calls, so that the
        Triton never waits for a statistics read."""
        if self.watch is None or (self._sampling is not None and not self._sampling.done()):
            return
        if not self.watch.due(time.monotonic()):
            return
        if self.watch.base is None:
            await self._sample()
        else:
            self._sampling = asyncio.ensure_future(self._sample())

    async def _sample(self) -> None:
        served = await self.backend.requests_served()
        if self.watch is None:
            return
        if served is None:  # no statistics: the budget always applies
            self.watch = None
            return
        # The job's calls sent up to now, read after the reply: calls still in flight or counted late
        # by the Triton only lower served - sent, so only someone else's requests raise it.
        self.watch.observe(time.monotonic(), served, self.own_calls)

    async def _one(self, chunk: list[str]):  # noqa: ANN202 - (probabilities, labels)
        start = time.monotonic()
        self.own_calls += 1  # counted when sent (LiveWatch: served - sent never overstates others' requests)
        out = await self.backend.infer(chunk)
        self.sizer.observe(time.monotonic() - start, len(chunk))
        await self._throttle(len(chunk))
        return out

    async def _throttle(self, rows: int) -> None:
        self.rows += rows
        if self.rate:
            ahead = self.rows / self.rate - (time.monotonic() - self.t0)
            if ahead > 0:
                await asyncio.sleep(ahead)

    def close(self) -> None:
        backend, self.backend = getattr(self, "backend", None), None
        if backend is not None:
            backend.close()

    def __del__(self) -> None:
        self.close()


# ---- the driver -----------------------------------------------------------------------------
def choose_endpoint(endpoints: list, app: str, now: float, max_age_s: float = 10.0):  # noqa: ANN001, ANN201
    """The Triton a `--backend serving` job uses: among the fresh endpoints published for `app`
    (serving/transport/endpoints.py), one on the node that has the most of them (ties: the
    lowest address, so the choice is stable). Raises ValueError naming the app when none is fresh."""
    fresh = [e for e in endpoints if e.app == app and now - e.ts <= max_age_s]
    if not fresh:
        raise ValueError(f"backend: no running replica of {app} publishes a Triton (none in the last "
                         f"{max_age_s:.0f} s); deploy the version, or use --backend triton")
    per_node: dict[str, int] = {}
    for e in fresh:
        per_node[e.node] = per_node.get(e.node, 0) + 1
    return min(fresh, key=lambda e: (-per_node[e.node], e.grpc))


def serving_endpoint(model: str, version: str):  # noqa: ANN201 - an Endpoint
    """The chosen endpoint of the version's running replicas, read from the cluster (Ray is up)."""
    from distilserve.core.names import app_name
    from serving import raycompat
    from serving.transport.endpoints import read_all

    raycompat.check_internal_kv()
    return choose_endpoint(read_all(), app_name(model, version), time.time())


def choose_executor(requested: str, backend: str, actors: int, endpoint_node: str | None,
                    driver_node: str | None, cluster: bool = True) -> str:
    """'local' or 'ray' for a job; raises ValueError (naming the flag) for a combination that cannot run.

    auto is local only for one actor that would run on the driver's node anyway, so that Ray Data's
    planning and the actor's start would be pure start-up:
    - the serving backend, with the chosen replica's Triton on the driver's node (the actor is pinned there);
    - a backend of its own (triton, torch) with no cluster (`cluster` False: no --ray-address and no Ray
      already up in this process), where the job would start a one-node Ray just for that actor.
    Everything else (several actors, a private backend on a cluster, whose actor Ray may place on any
    node; a replica on another node) stays on Ray."""
    same_node = backend == "serving" and endpoint_node is not None and endpoint_node == driver_node
    own_node = backend != "serving" and not cluster
    if requested == "ray":
        return "ray"
    if requested == "auto":
        return "local" if (same_node or own_node) and actors == 1 else "ray"
    if actors != 1:
        raise ValueError(f"executor: local runs one Predictor in the driver, got actors={actors}; use --executor ray")
    if backend == "serving" and not same_node:
        raise ValueError(f"executor: local needs the replica's Triton on this node (it listens on loopback); the "
                         f"chosen one is on node {endpoint_node}, this driver on {driver_node}; use --executor ray")
    return "local"


def _ray_up() -> bool:
    """Ray already initialised in this process (a caller connected it to a cluster), without importing it."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def ensure_ray(address: str | None = None, temp_dir: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to Ray, or start a loopback-only local one; True when this call started it."""
    from serving.ray_env import loopback_ray_env

    if not address:
        loopback_ray_env()
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, namespace="distilserve-batch", log_to_driver=False)
    else:
        from serving import raycompat

        kwargs: dict = {"namespace": "distilserve-batch", "include_dashboard": False, "log_to_driver": False,
                        **raycompat.loopback_init_kwargs(temp_dir)}
        if num_cpus:
            kwargs["num_cpus"] = num_cpus
        raycompat.init_local(**kwargs)  # again when the node misses Ray's start-up deadline
    return True


def prepare(spec: JobSpec) -> tuple[sh.Manifest, list[str], list[str]]:
    """Read the input, make or check the manifest; returns (manifest, texts, keys)."""
    from distilserve.core.card import ModelCard

    version = resolve_version(spec.model_repository, spec.model, spec.version, spec.registry)
    texts = read_texts(spec.input, spec.text_column, spec.split)
    keys = [sh.input_key(t) for t in texts]
    card = ModelCard.read(Path(spec.model_repository) / spec.model / version)
    fresh = sh.Manifest(model=spec.model, version=version, labels=list(card.labels), input=str(spec.input),
                        text_column=spec.text_column, input_fingerprint=sh.input_fingerprint(keys),
                        num_rows=len(texts), shard_rows=spec.shard_rows)
    out = Path(spec.output)
    out.mkdir(parents=True, exist_ok=True)
    sh.remove_leftovers(out)
    old = sh.load_manifest(out)
    if old is not None:
        try:
            old.check_same_job(fresh)
            return old, texts, keys
        except ValueError:
            if not spec.overwrite:
                raise
        for stale in out.glob("shard-*.parquet"):
            stale.unlink()
    sh.save_manifest(out, fresh)
    return fresh, texts, keys


def _write_shard(out: Path, shard: sh.Shard, parts: list[pa.Table]) -> None:
    import pyarrow.parquet as pq

    table = pa.concat_tables(parts).drop_columns(["shard"]).sort_by("row_id").cast(OUTPUT_SCHEMA)
    if table.num_rows != shard.rows:  # a bug upstream, never a silent short shard
        raise RuntimeError(f"shard {shard.index}: {table.num_rows} rows, expected {shard.rows}")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    sh.atomic_write_bytes(out / shard.filename, sink.getvalue().to_pybytes())


def run_job(spec: JobSpec, *, ray_address: str | None = None, ray_temp_dir: str | None = None) -> sh.Manifest:
    """Run (or resume) a job to completion; returns the final manifest."""
    manifest, texts, keys = prepare(spec)
    out = Path(spec.output)
    todo = sh.pending_shards(manifest, out)
    run = {"started": time.time(), "pending_shards": len(todo), "rows": sum(s.rows for s in todo),
           "max_call_ms": call_budget_ms(spec.backend, spec.max_call_ms),
           "inflight": calls_in_flight(spec.backend, spec.inflight), "budget_when_idle": spec.budget_when_idle}
    log.info("%s v%s: %d rows, %d shards, %d already done, %d to run", manifest.model, manifest.version,
             manifest.num_rows, len(manifest.shards), len(manifest.done), len(todo))
    if not todo:
        return manifest
    if spec.backend != "serving":  # the executor depends only on whether there is a cluster
        executor = choose_executor(spec.executor, spec.backend, spec.actors, None, None,
                                   cluster=bool(ray_address) or _ray_up())
        if executor == "local":  # no Ray at all: the Predictor owns its backend in this process
            run["executor"] = executor
            _collect(spec, manifest, todo, out, run, _run_local(spec, manifest, texts, keys, todo, None))
            return manifest
    started_ray = ensure_ray(ray_address, ray_temp_dir)
    try:
        endpoint, node = None, None
        if spec.backend == "serving":
            import ray

            chosen = serving_endpoint(manifest.model, manifest.version)
            endpoint, node = chosen.grpc, chosen.node  # loopback: the caller must run on the replica's node
            run["endpoint"] = endpoint
            log.info("backend serving: the Triton of a running replica at %s", endpoint)
            executor = choose_executor(spec.executor, spec.backend, spec.actors, node,
                                       ray.get_runtime_context().get_node_id())
        run["executor"] = executor
        blocks = (_run_local(spec, manifest, texts, keys, todo, endpoint) if executor == "local"
                  else _run_ray(spec, manifest, texts, keys, todo, endpoint, node))
        _collect(spec, manifest, todo, out, run, blocks)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return manifest


def _input_block(shard: sh.Shard, texts: list[str], keys: list[str]) -> pa.Table:
    return pa.table({"shard": pa.array([shard.index] * shard.rows, pa.int64()),
                     "row_id": pa.array(range(shard.start, shard.stop), pa.int64()),
                     "input_key": keys[shard.start: shard.stop], "text": texts[shard.start: shard.stop]})


def _predictor_kwargs(spec: JobSpec, manifest: sh.Manifest, endpoint: str | None) -> dict:
    return {
        "repository": str(Path(spec.model_repository).resolve()), "model": manifest.model,
        "version": manifest.version, "backend": spec.backend, "torch_threads": spec.torch_threads,
        "gpu": spec.actor_gpus > 0, "infer_batch": spec.infer_batch,
        "inflight": calls_in_flight(spec.backend, spec.inflight),
        "max_rows_per_s": spec.max_rows_per_s / spec.actors if spec.max_rows_per_s else None,
        "endpoint": endpoint, "max_call_ms": call_budget_ms(spec.backend, spec.max_call_ms),
        "budget_when_idle": spec.budget_when_idle,
    }


SERVING_CALL_BUDGET_MS = 100.0


def calls_in_flight(backend: str, inflight: int | None) -> int:
    """The flag's value; unset, 1 where the job shares a replica's Triton with live traffic, else 2."""
    if inflight is None:
        return 1 if backend == "serving" else 2
    return inflight


def call_budget_ms(backend: str, max_call_ms: float | None) -> float | None:
    """The time budget of one call: the flag's value (0: none); unset, 100 ms where the job shares a
    replica's Triton with live traffic (`serving`), none where it has a backend of its own."""
    if max_call_ms is None:
        return SERVING_CALL_BUDGET_MS if backend == "serving" else None
    return max_call_ms or None


def _run_local(spec: JobSpec, manifest: sh.Manifest, texts: list[str], keys: list[str], todo: list[sh.Shard],
               endpoint: str | None) -> Iterator[pa.Table]:
    """The local executor: one Predictor in this process, the shards one after another. The next
    shard is inferred on a worker thread while the caller writes (and fsyncs) the one before, as a Ray
    actor does while the driver writes."""
    from concurrent.futures import Future, ThreadPoolExecutor

    predictor = Predictor(**_predictor_kwargs(spec, manifest, endpoint))
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="batch-local") as pool:
            ahead: Future | None = None
            for shard in todo:
                nxt = pool.submit(predictor, _input_block(shard, texts, keys))
                if ahead is not None:
                    yield ahead.result()
                ahead = nxt
            if ahead is not None:
                yield ahead.result()
    finally:
        predictor.close()


def _run_ray(spec: JobSpec, manifest: sh.Manifest, texts: list[str], keys: list[str], todo: list[sh.Shard],
             endpoint: str | None, node: str | None) -> Iterator[pa.Table]:
    """The ray executor: the shards as Ray Data blocks through a pool of Predictor actors."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts finished rows; Ray's would interleave with it
    remote: dict = {}
    if node is not None:  # the serving backend's Triton listens on loopback: the actors run on its node
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    ds = ray.data.from_arrow([_input_block(s, texts, keys) for s in todo]).map_batches(
        Predictor, batch_size=None, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=spec.actors), num_cpus=spec.actor_cpus,
        num_gpus=spec.actor_gpus or None, **remote, fn_constructor_kwargs=_predictor_kwargs(spec, manifest, endpoint),
    )
    # No prefetch: with one, Ray Data hands block k over only once block k+1 is in, so each shard
    # was written (and recorded as done) a whole block late.
    yield from ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0)


def _collect(spec: JobSpec, manifest: sh.Manifest, todo: list[sh.Shard], out: Path, run: dict,
             blocks: Iterator[pa.Table]) -> None:
    """Write each shard once all its rows came back from the executor, then record it in the manifest."""
    from tqdm import tqdm

    by_index = {s.index: s for s in todo}
    partial: dict[int, list[pa.Table]] = {}
    have: dict[int, int] = {}
    bar = tqdm(total=manifest.num_rows, initial=manifest.rows_done, unit="rows", disable=not spec.progress,
               desc=f"{manifest.model} v{manifest.version}")
    rows_after_first = 0
    manifest.runs.append(run)  # updated in place as shards finish; saved with each shard
    for block in blocks:
        # Blocks normally hold one shard each, but nothing below relies on it.
        for index in set(block.column("shard").to_pylist()):
            part = block.filter(pc.equal(block.column("shard"), index))
            partial.setdefault(index, []).append(part)
            have[index] = have.get(index, 0) + part.num_rows
            shard = by_index[index]
            if have[index] < shard.rows:
                continue
            _write_shard(out, shard, partial.pop(index))
            manifest.done[index] = shard.rows  # only after the file is durable
            if "first_shard" not in run:
                run["first_shard"] = time.time()
            else:
                rows_after_first += shard.rows
            run["finished"] = time.time()
            run["rows_after_first_shard"] = rows_after_first
            sh.save_manifest(out, manifest)
            bar.update(shard.rows)
    bar.close()
    if not manifest.complete:
        raise RuntimeError(f"job ended with {len(manifest.done)} of {len(manifest.shards)} shards done")

