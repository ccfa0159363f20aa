"""GPU check: raw in-process batched throughput vs full-stack throughput, teacher and student.

    scripts/gpu_check.sh                 # on a GPU machine, under 5 minutes
    scripts/gpu_check.py --dry-run       # CPU smoke test with tiny models (CI / laptops)

Builds a model repository in a temp folder from the offline MiniLM-L6 wheel: version 1 =
the teacher (6 layers, fp32), version 2 = a 2-layer student cut from it (layers 0 and 5),
exported in fp16 (`--student-dtype`). Accuracy is irrelevant here (random heads): only
throughput is measured, in texts per second.

raw   = model.py's Classifier in this process, batches of `--batch` texts, on the GPU.
stack = `distilserve serve` (Ray Serve ingress -> ModelVersion replica -> its tritonserver
        with KIND_GPU instances, `--gpu` GPUs per replica) driven over HTTP by
        `--concurrency` clients sending `--request-texts` texts each to the pinned-version
        OIP endpoint.
Prints one table row per version and the stack/raw ratio; writes JSON to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TEXTS = [
    "I love this phone, the battery lasts forever",
    "worst customer service I have ever had",
    "the package arrived on tuesday",
    "not bad at all, would buy again",
    "this update broke everything, again",
    "meh. it is fine I guess",
    "absolutely fantastic concert last night!!",
    "traffic on the bridge is slow this morning",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="tiny models on CPU, short runs: a smoke test")
    p.add_argument("--seconds", type=float, default=None, help="measuring time per run (default 20; dry run 3)")
    p.add_argument("--batch", type=int, default=32, help="texts per forward pass in the raw measurement")
    p.add_argument("--concurrency", type=int, default=32, help="HTTP clients in flight against the stack")
    p.add_argument("--request-texts", type=int, default=8, help="texts per HTTP request")
    p.add_argument("--gpu", type=float, default=0.5, help="GPUs per ModelVersion replica (fractions allowed)")
    p.add_argument("--replicas", type=int, default=1, help="replicas per version (min = max)")
    p.add_argument("--student-layers", default="0,5", help="teacher layers the student keeps")
    p.add_argument("--student-dtype", choices=["float32", "float16", "bfloat16"], default="float16")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check.json")
    p.add_argument("--keep", action="store_true", help="keep the temp model repository")
    args = p.parse_args(argv)
    if args.seconds is None:
        args.seconds = 3.0 if args.dry_run else 20.0
    return args


# ---- models --------------------------------------------------------------------------------------
def build_repository(repo: Path, args: argparse.Namespace) -> dict[str, Path]:
    import torch

    from distill.architectures import student_from_layers
    from distill.export import export_version
    from distill.models import load_teacher_backbone, tiny_teacher

    shutil.copytree(ROOT / "model_repository" / "sentiment", repo / "sentiment",
                    ignore=shutil.ignore_patterns("[0-9]*", "__pycache__"))
    if args.dry_run:
        teacher, tok = tiny_teacher(" ".join(TEXTS).split(), layers=2, hidden=32)
        layers = [0]
    else:
        teacher, tok = load_teacher_backbone()
        layers = [int(x) for x in args.student_layers.split(",")]
    latency = [{"batch_size": 1, "p50_ms": 0.0, "p99_ms": 0.0, "runs": 1}]

    def export(model, kind: str, dtype: torch.dtype | None, version: str) -> Path:  # noqa: ANN001
        path, _ = export_version(
            model, tok, repo=repo, model_name="sentiment", version=version, dtype=dtype,
            card_fields={"kind": kind, "labels": ["negative", "neutral", "positive"], "max_seq_len": 64,
                         "accuracy": 0.0, "eval_examples": 1, "latency": latency, "measured_on": "gpu_check"},
            lineage_fields={"data_fingerprint": "gpu_check (random heads)"},
        )
        return path

    # The student is cut before exporting: export casts the model it is given in place.
    student = student_from_layers(teacher, layers)
    dtype = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.student_dtype]
    return {"1": export(teacher, "teacher", None, "1"), "2": export(student, "student", dtype, "2")}


# ---- raw -----------------------------------------------------------------------------------------
def raw_throughput(version_dir: Path, device: str, args: argparse.Namespace) -> float:
    import torch

    from serving.backends import load_classifier_module

    clf = load_classifier_module(version_dir.parent.parent, "sentiment").Classifier(version_dir, device=device)
    batch = (TEXTS * (args.batch // len(TEXTS) + 1))[: args.batch]
    for _ in range(3):
        clf.predict(batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        clf.predict(batch)  # ends with .cpu(): every step is synchronised with the GPU
        done += len(batch)
    rate = done / (time.perf_counter() - start)
    del clf
    if device == "cuda":
        torch.cuda.empty_cache()
    return rate


# ---- stack ---------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, timeout: float, what: str, proc: subprocess.Popen) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`distilserve serve` exited ({proc.returncode}) while waiting for {what}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


async def _drive(url: str, version: str, args: argparse.Namespace) -> tuple[float, int]:
    import httpx

    from distilserve.core.tensors import INPUT_TEXT

    texts = (TEXTS * (args.request_texts // len(TEXTS) + 1))[: args.request_texts]
    body = {"inputs": [{"name": INPUT_TEXT, "shape": [len(texts), 1], "datatype": "BYTES", "data": texts}]}
    endpoint = f"{url}/v2/models/sentiment/versions/{version}/infer"
    done = errors = 0
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for _ in range(2):  # warm-up: replica batchers, CUDA kernels, connections
            await asyncio.gather(*[client.post(endpoint, json=body) for _ in range(args.concurrency)])
        stop = time.perf_counter() + args.seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop:
                r = await client.post(endpoint, json=body)
                if r.status_code == 200:
                    done += len(texts)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(args.concurrency)])
        return done / (time.perf_counter() - start), errors


def stack_throughput(repo: Path, work: Path, args: argparse.Namespace, gpu: float) -> dict[str, dict]:
    import httpx
    import yaml

    port, token = _free_port(), secrets.token_urlsafe(16)
    cfg = {"port": port, "model_repository": str(repo), "registry": str(work / "registry.db"),
           "models": ["sentiment"], "backend": "triton", "gpu": gpu, "replica_cpus": 0.5,
           "autoscaling": {"min_replicas": args.replicas, "max_replicas": args.replicas}}
    (work / "serve.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "DISTILSERVE_ADMIN_TOKEN": token, "PYTHONPATH": str(ROOT)}
    log = open(work / "serve.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([sys.executable, "-m", "distilserve.cli.main", "serve", "--config", str(work / "serve.yaml"),
                             "--no-build"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    results: dict[str, dict] = {}
    try:
        _wait(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, 240, "the stack", proc)
        r = httpx.post(f"{url}/admin/models/sentiment/deploy", headers={"Authorization": f"Bearer {token}"},
                       json={"version": "2", "warm": True, "reason": "gpu_check"}, timeout=30)
        r.raise_for_status()
        for version in ("1", "2"):
            _wait(lambda v=version: httpx.get(f"{url}/v2/models/sentiment/versions/{v}/ready").status_code == 200,
                  240, f"version {version} ready", proc)
            rate, errors = asyncio.run(_drive(url, version, args))
            results[version] = {"texts_per_s": rate, "errors": errors}
    except Exception:
        log.flush()
        print((work / "serve.log").read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # serve_forever shuts Serve, Ray and every Triton down
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("gpu_check: no CUDA GPU visible; run with --dry-run for the CPU smoke test", file=sys.stderr)
        return 2
    device, gpu = ("cuda", args.gpu) if cuda else ("cpu", 0.0)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        versions = build_repository(work / "repo", args)
        print(f"gpu_check: device={device} ({torch.cuda.get_device_name(0) if cuda else 'no GPU'}), "
              f"stack gpu per replica={gpu}, built in {time.monotonic() - started:.0f}s", flush=True)
        raw = {v: raw_throughput(p, device, args) for v, p in versions.items()}
        stack = stack_throughput(work / "repo", work, args, gpu)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    rows = []
    print(f"\n{'version':<18}{'dtype':<10}{'raw texts/s':>14}{'stack texts/s':>16}{'stack/raw':>11}{'errors':>8}")
    for v, kind in (("1", "teacher"), ("2", "student")):
        dtype = "float32" if v == "1" else args.student_dtype
        ratio = stack[v]["texts_per_s"] / raw[v] if raw[v] else float("nan")
        rows.append({"version": v, "kind": kind, "dtype": dtype, "raw_texts_per_s": raw[v],
                     "stack_texts_per_s": stack[v]["texts_per_s"], "stack_over_raw": ratio, "errors": stack[v]["errors"]})
        print(f"{v + ' (' + kind + ')':<18}{dtype:<10}{raw[v]:>14.1f}{stack[v]['texts_per_s']:>16.1f}{ratio:>11.2f}"
              f"{stack[v]['errors']:>8}")
    speedup = rows[1]["stack_texts_per_s"] / rows[0]["stack_texts_per_s"] if rows[0]["stack_texts_per_s"] else float("nan")
    print(f"student/teacher through the stack: {speedup:.2f}x   total {time.monotonic() - started:.0f}s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": device, "dry_run": args.dry_run, "gpu_per_replica": gpu,
                                    "batch": args.batch, "concurrency": args.concurrency,
                                    "request_texts": args.request_texts, "seconds": args.seconds,
                                    "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["errors"] == 0 and r["stack_texts_per_s"] > 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
