"""GPU benchmark: raw torch vs ONNX Runtime (CUDA, TensorRT) vs Triton, teacher and student.

    python scripts/gpu_bench.py                    # a CUDA GPU: MiniLM-L6 teacher + 2-layer student, < 5 min
    python scripts/gpu_bench.py --dry-run          # CPU, tiny models, the same code paths, < 1 min

Every variant is a version folder served by the repository's own model.py (its `Classifier`
in this process for "raw"; a real tritonserver with KIND_GPU instances for "triton", the fp16
variants only unless --triton-all):

    torch fp32 / fp16 / bf16     card dtype; model.py casts on CUDA
    onnx  fp32 / fp16 on CUDA    `distill.compile.export_onnx`; fp16 via onnxruntime's converter
    onnx  fp16 on TensorRT       ONNX_PROVIDER=tensorrt (one shape profile, engine cache)

bf16 is torch-only (ONNX Runtime's CUDA provider lacks bf16 kernels for most of these ops).
A provider the installed onnxruntime lacks degrades to the next (CPU last): each row records
the providers the session really got. On a machine without CUDA the run is a dry run.
Raw rows also time the batch-32 calls as length-sorted passes (model.py `length_chunks`, on by
default for CPU only), to decide that default for GPUs. Writes one JSON file (`--out`); stops
starting measurements when `--budget-s` is spent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


@dataclass(frozen=True)
class Variant:
    model: str  # "teacher" or "student"
    runtime: str  # "torch" or "onnx"
    dtype: str  # "float32", "float16", "bfloat16"
    provider: str = "auto"  # model.py's ONNX_PROVIDER: auto (CUDA), tensorrt

    @property
    def name(self) -> str:
        dt = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[self.dtype]
        rt = self.runtime if self.runtime == "torch" else f"onnx-{'trt' if self.provider == 'tensorrt' else 'cuda'}"
        return f"{self.model}_{rt}_{dt}"


def plan(tensorrt: bool = True) -> list[Variant]:
    """The variants of one run, per model; the first of each model is the reference (torch fp32)."""
    out = []
    for model in ("teacher", "student"):
        out += [Variant(model, "torch", d) for d in ("float32", "float16", "bfloat16")]
        out += [Variant(model, "onnx", d) for d in ("float32", "float16")]
        if tensorrt:
            out.append(Variant(model, "onnx", "float16", "tensorrt"))
    return out


def served_by_triton(variant: Variant, dry_run: bool, everything: bool = False) -> bool:
    """Which variants also go behind Triton: a server load costs ~10 s, the 5 minutes allow ~6.

    On a GPU the half-precision ones (the candidates to ship); in a dry run one torch and one
    ONNX variant of the student, enough to run the code path.
    """
    if everything:
        return True
    if dry_run:
        return variant.model == "student" and variant.name.endswith(("torch_fp32", "onnx-trt_fp16"))
    return variant.dtype == "float16"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="tiny models on CPU, short runs (automatic without CUDA)")
    p.add_argument("--seconds", type=float, default=None, help="time per measurement (default 2; dry run 0.3)")
    p.add_argument("--concurrency", type=int, default=16, help="gRPC clients in flight against Triton")
    p.add_argument("--request-texts", type=int, default=8, help="texts per Triton request")
    p.add_argument("--eval-texts", type=int, default=512, help="held-out texts for label agreement")
    p.add_argument("--no-tensorrt", action="store_true", help="skip the TensorRT variants")
    p.add_argument("--no-triton", action="store_true", help="raw measurements only")
    p.add_argument("--triton-all", action="store_true", help="every variant behind Triton, not only fp16 ones")
    p.add_argument("--budget-s", type=float, default=260.0, help="start no measurement after this many seconds")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_bench.json")
    return p.parse_args(argv)


# ---- variants as version folders -----------------------------------------------------------------
def _link_files(src: Path, dst: Path, skip: set[str]) -> None:
    for item in src.iterdir():
        if item.is_file() and not item.is_symlink() and item.name not in skip:
            (dst / item.name).symlink_to(item.resolve())


def make_model(triton_repo: Path, variant: Variant, src: Path, onnx_fp32: Path | None, gpu: bool) -> Path:
    """`triton_repo/<variant>/{config.pbtxt,model.py,1/}`: a Triton model serving the variant."""
    from serving.triton.repo_view import patch_config

    template = ROOT / "model_repository" / "sentiment"
    model_dir = triton_repo / variant.name
    version = model_dir / "1"
    version.mkdir(parents=True)
    config = patch_config((template / "config.pbtxt").read_text(), "1", gpu=gpu)
    config = config.replace('name: "sentiment"', f'name: "{variant.name}"')
    config = re.sub(r'(key: "ONNX_PROVIDER"\s*value: \{ string_value: ")\w+', rf"\g<1>{variant.provider}", config)
    (model_dir / "config.pbtxt").write_text(config)
    shutil.copy(template / "model.py", model_dir / "model.py")
    (version / "model.py").symlink_to(Path("..") / "model.py")
    card = json.loads((src / "card.json").read_text())
    card["dtype"] = variant.dtype
    if variant.runtime == "onnx":
        _link_files(src, version, {"card.json", "model.safetensors"})
        if variant.dtype == "float16":
            _to_fp16(onnx_fp32, version / "model.onnx")
        else:
            (version / "model.onnx").symlink_to(onnx_fp32)
        card["runtime"] = "onnx"
        card["lineage"]["config"] = {"inputs": json.loads(onnx_fp32.with_suffix(".json").read_text())}
    else:
        _link_files(src, version, {"card.json"})
    (version / "card.json").write_text(json.dumps(card))
    return version


def _to_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # keep_io_types: ids in, fp32 logits out, as model.py feeds and reads them.
    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def export_fp32(version_dir: Path, dst: Path, texts: list[str]) -> Path:
    from distill.compile import export_onnx

    card = json.loads((version_dir / "card.json").read_text())
    names = export_onnx(version_dir, dst, texts, int(card["max_seq_len"]))
    dst.with_suffix(".json").write_text(json.dumps(names))
    return dst


# ---- raw: model.py's Classifier in this process --------------------------------------------------
def _rate_loop(fn, batches: list[list[str]], seconds: float) -> tuple[list[float], int]:  # noqa: ANN001
    """Call `fn` on `batches` in turn for `seconds`: per-call ms and texts done."""
    times, done, i = [], 0, 0
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or not times:
        batch = batches[i % len(batches)]
        t0 = time.perf_counter()
        fn(batch)  # ends with .cpu()/numpy: synchronised with the GPU
        times.append((time.perf_counter() - t0) * 1000)
        done, i = done + len(batch), i + 1
    return times, done


def measure_raw(version: Path, device: str, provider: str, texts: list[str], seconds: float) -> dict:
    from distilserve.core.stats import percentile
    from serving.backends import load_classifier_module

    module = load_classifier_module(version.parent.parent, version.parent.name)
    clf = module.Classifier(version, device=device, onnx_provider=provider)
    providers = clf.runner.session.get_providers() if clf.runtime == "onnx" else [f"torch:{device}"]
    b1 = [[t] for t in texts[:256]]
    b32 = [texts[i : i + 32] for i in range(0, len(texts) - 31, 32)] or [texts[:32]]
    for batch in b32[:2] + b1[:3]:  # warm-up: kernels, allocator, TensorRT engines
        clf.predict(batch)
    t1, _ = _rate_loop(clf.predict, b1, seconds)
    chunks = getattr(module, "CHUNK_TOKENS_CPU", 0)
    clf.chunk_tokens = 0  # one padded pass per call: LENGTH_CHUNK_TOKENS auto on a GPU
    t32, done = _rate_loop(clf.predict, b32, seconds)
    labels = [lab for i in range(0, len(texts), 64) for lab in clf.predict(texts[i : i + 64])[1]]
    out = {"providers": providers, "b1_p50_ms": round(percentile(t1, 50), 3),
           "b32_p50_ms": round(percentile(t32, 50), 3),
           "b32_texts_per_s": round(done / (sum(t32) / 1000), 1), "labels": labels}
    if chunks:  # the same calls as length-sorted passes: does the CPU default pay on this device too?
        clf.chunk_tokens = chunks
        clf.predict(b32[0])
        t32c, done_c = _rate_loop(clf.predict, b32, seconds)
        out.update(b32_chunked_texts_per_s=round(done_c / (sum(t32c) / 1000), 1), chunk_tokens=chunks)
    return out


# ---- Triton: the same folder behind a real tritonserver ------------------------------------------
async def _drive(url: str, model: str, texts: list[str], args: argparse.Namespace) -> dict:
    import numpy as np
    import tritonclient.grpc.aio as grpcclient

    from distilserve.core.stats import percentile
    from distilserve.core.tensors import INPUT_TEXT

    client = grpcclient.InferenceServerClient(url)
    n = args.request_texts
    arr = np.array([t.encode() for t in (texts * (n // len(texts) + 1))[:n]], dtype=np.object_).reshape(-1, 1)
    inp = grpcclient.InferInput(INPUT_TEXT, list(arr.shape), "BYTES")
    inp.set_data_from_numpy(arr)
    lat: list[float] = []
    errors = 0

    async def worker(stop: float) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                await client.infer(model, [inp])
                lat.append((time.perf_counter() - t0) * 1000)
            except Exception:  # noqa: BLE001 - counted; the run goes on
                errors += 1

    try:
        await asyncio.gather(*[worker(time.perf_counter() + 0.5) for _ in range(args.concurrency)])  # warm-up
        lat.clear()
        start = time.perf_counter()
        await asyncio.gather(*[worker(start + args.seconds) for _ in range(args.concurrency)])
        elapsed = time.perf_counter() - start
    finally:
        await client.close()
    return {"texts_per_s": round(len(lat) * n / elapsed, 1),
            "p50_ms": round(percentile(lat, 50), 3) if lat else None, "errors": errors}


def measure_triton(srv, name: str, texts: list[str], args: argparse.Namespace) -> dict:  # noqa: ANN001
    t0 = time.perf_counter()
    srv.load(name, timeout=240)
    load_s = round(time.perf_counter() - t0, 1)
    try:
        return {"load_s": load_s, **asyncio.run(_drive(srv.grpc_url, name, texts, args))}
    finally:
        srv.unload(name)


# ---- the run -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import onnxruntime as ort
    import torch

    from distill import data

    cuda = torch.cuda.is_available()
    args.dry_run = args.dry_run or not cuda
    device = "cuda:0" if cuda and not args.dry_run else "cpu"
    if args.seconds is None:
        args.seconds = 0.3 if args.dry_run else 2.0
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    rows: list[dict] = []
    try:
        from gpu_check import build_repository  # the teacher + layer-cut student of scripts/gpu_check.py

        n_eval = 64 if args.dry_run else args.eval_texts
        texts = list(data.load_splits(test_size=n_eval, train_size=10).test["text"])
        sources = build_repository(work / "src", argparse.Namespace(
            dry_run=args.dry_run, student_layers="0,5", student_dtype="float32"))
        sources = {"teacher": sources["1"], "student": sources["2"]}
        onnx = {m: export_fp32(d, work / f"{m}.onnx", texts) for m, d in sources.items()}
        variants = plan(tensorrt=not args.no_tensorrt)
        folders = {v: make_model(work / "triton", v, sources[v.model], onnx[v.model], device != "cpu") for v in variants}
        print(f"gpu_bench: {device} ({torch.cuda.get_device_name(0) if cuda else 'no GPU'}), "
              f"{len(variants)} variants ready in {time.monotonic() - started:.0f}s", flush=True)
        reference: dict[str, list[str]] = {}
        for v in variants:
            row = {"variant": v.name, **asdict(v)}
            rows.append(row)
            if time.monotonic() - started > args.budget_s:
                row["skipped"] = "time budget"
                continue
            raw = measure_raw(folders[v], device, v.provider, texts, args.seconds)
            labels = raw.pop("labels")
            ref = reference.setdefault(v.model, labels)  # the model's first variant: torch fp32
            row["raw"] = raw
            row["agreement_with_torch_fp32"] = sum(a == b for a, b in zip(labels, ref, strict=True)) / len(ref)
            if cuda:
                torch.cuda.empty_cache()
        if not args.no_triton:
            from serving.triton.server import TritonServer

            with TritonServer(work / "triton", log_dir=work) as srv:
                for v, row in zip(variants, rows, strict=True):
                    if not served_by_triton(v, args.dry_run, args.triton_all):
                        continue
                    if "skipped" in row or time.monotonic() - started > args.budget_s:
                        row.setdefault("skipped", "time budget (triton)")
                        continue
                    row["triton"] = measure_triton(srv, v.name, texts, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'variant':<26}{'providers':<34}{'b1 p50 ms':>10}{'b32 text/s':>12}{'chunked':>9}{'triton text/s':>15}"
          f"{'agree':>7}")
    for r in rows:
        raw, tri = r.get("raw", {}), r.get("triton", {})
        print(f"{r['variant']:<26}{','.join(raw.get('providers', ['-']))[:33]:<34}{raw.get('b1_p50_ms', '-'):>10}"
              f"{raw.get('b32_texts_per_s', '-'):>12}{raw.get('b32_chunked_texts_per_s', '-'):>9}"
              f"{tri.get('texts_per_s', '-'):>15}"
              f"{r.get('agreement_with_torch_fp32', float('nan')):>7.3f}  {r.get('skipped', '')}")
    result = {
        "device": device, "gpu": torch.cuda.get_device_name(0) if cuda else None, "dry_run": args.dry_run,
        "torch": torch.__version__, "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers(),
        "machine": platform.node(), "seconds_per_measurement": args.seconds, "concurrency": args.concurrency,
        "request_texts": args.request_texts, "eval_texts": len(texts), "total_s": round(time.monotonic() - started, 1),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['total_s']:.0f}s)")
    errors = sum(r.get("triton", {}).get("errors", 0) for r in rows)
    return 1 if errors or not any("raw" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
