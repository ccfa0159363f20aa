"""The student recipe: distill an exported teacher version into a smaller student and export it.

`run_student(cfg, repo)` loads the teacher from `<repo>/<model>/<teacher_version>/`, rebuilds
the teacher's exact splits from the data source on its card (the fingerprint must match: the
test split is then the teacher's, so no student is evaluated on rows the teacher trained on),
trains one student per seed against cached teacher logits (plus on-the-fly hidden states /
attentions when those losses are configured), chooses the best seed on the validation split,
reports the test accuracy of every seed, measures the teacher's and the student's latency in
the same process, and exports the best seed as the next version.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import datasets
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from distill import cache, data, evaluate, export, train
from distill.architectures import build_student, check_supported
from distill.config import DistillConfig, rows_for
from distill.errors import InputError
from distill.losses import DistillLoss
from distilserve.core.card import LatencyStats, ModelCard

log = logging.getLogger(__name__)


@dataclass
class Teacher:
    """An exported teacher version, loaded."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    card: ModelCard
    version_dir: Path
    weights_sha256: str


@dataclass
class StudentResult:
    """Metrics of one recipe over its seeds, plus the best seed's model for export."""

    name: str
    config: DistillConfig
    accuracy: float  # mean over seeds
    accuracy_std: float  # sample std (ddof=1); 0 for one seed
    accuracy_seeds: list[float]  # test accuracy of every seed
    best_seed: int  # chosen on validation accuracy, never on test
    val_accuracy_seeds: list[float]
    validation_accuracy: float  # the best seed's
    eval_examples: int
    latency: list[LatencyStats]  # the best-seed student, measured beside the teacher
    teacher_latency: list[LatencyStats]
    teacher_accuracy: float  # on the same test rows
    parameters: int
    bytes: int  # weights file size when exported, else parameter bytes
    train_rows: int
    transfer_rows: int
    speedup: dict[int, float]  # batch size -> teacher p50 / student p50
    accuracy_ratio: float  # student mean / teacher
    teacher_version: str
    data_fingerprint: str
    cache_hits: int = 0
    version_dir: Path | None = None
    card: ModelCard | None = None
    model: PreTrainedModel | None = field(default=None, repr=False)
    tokenizer: PreTrainedTokenizerBase | None = field(default=None, repr=False)

    def summary(self) -> dict:
        """JSON-ready metrics (no model)."""
        return {
            "name": self.name,
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "accuracy_seeds": self.accuracy_seeds,
            "best_seed": self.best_seed,
            "val_accuracy_seeds": self.val_accuracy_seeds,
            "eval_examples": self.eval_examples,
            "teacher_accuracy": self.teacher_accuracy,
            "accuracy_ratio": self.accuracy_ratio,
            "latency": [s.model_dump() for s in self.latency],
            "teacher_latency": [s.model_dump() for s in self.teacher_latency],
            "speedup": {str(k): v for k, v in self.speedup.items()},
            "parameters": self.parameters,
            "bytes": self.bytes,
            "train_rows": self.train_rows,
            "transfer_rows": self.transfer_rows,
            "teacher_version": self.teacher_version,
            "data_fingerprint": self.data_fingerprint,
            "version_dir": str(self.version_dir) if self.version_dir else None,
        }


# ---------------------------------------------------------------- pure arithmetic


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    return float(statistics.fmean(values)), float(statistics.stdev(values)) if len(values) > 1 else 0.0


def speedups(teacher: list[LatencyStats], student: list[LatencyStats]) -> dict[int, float]:
    """Teacher p50 / student p50 for every batch size both measured (>1 means the student is faster)."""
    t = {s.batch_size: s.p50_ms for s in teacher}
    out = {}
    for s in student:
        if s.batch_size in t and s.p50_ms > 0:
            out[s.batch_size] = t[s.batch_size] / s.p50_ms
    return out


def accuracy_ratio(student_accuracy: float, teacher_accuracy: float) -> float:
    """Student accuracy as a share of the teacher's; NaN when the teacher scored 0."""
    return student_accuracy / teacher_accuracy if teacher_accuracy > 0 else float("nan")


def fastest(*measurements: list[LatencyStats]) -> list[LatencyStats]:
    """Per batch size, the measurement with the lowest p50 (the least disturbed by neighbours)."""
    best: dict[int, LatencyStats] = {}
    for stats in measurements:
        for s in stats:
            if s.batch_size not in best or s.p50_ms < best[s.batch_size].p50_ms:
                best[s.batch_size] = s
    return [best[k] for k in sorted(best)]


# ---------------------------------------------------------------- teacher and data


def teacher_dir_for(repo: Path, model_name: str, version: str) -> Path:
    return Path(repo) / model_name / version


def load_teacher(version_dir: Path, *, eager_attention: bool = False) -> Teacher:
    """Model + tokenizer + card of an exported version (eager attention only when asked)."""
    version_dir = Path(version_dir)
    if not (version_dir / "card.json").is_file():
        raise FileNotFoundError(f"{version_dir} is not an exported version: card.json is missing")
    kwargs = {"attn_implementation": "eager"} if eager_attention else {}
    model = AutoModelForSequenceClassification.from_pretrained(version_dir, use_safetensors=True, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(version_dir)
    card = ModelCard.read(version_dir)
    return Teacher(model.eval(), tokenizer, card, version_dir, export.sha256_file(version_dir / export.WEIGHTS))


def teacher_splits(card: ModelCard) -> data.Splits:
    """The splits the teacher was trained, selected and evaluated on, checked against its fingerprint.

    The data source comes from the teacher's card (any labelled file); cards written before
    cards recorded it name the built-in corpus through their lineage config.
    """
    source = card.data_source
    if source is None:
        tcfg = card.lineage.config
        source = data.DataSource(
            path="", format="corpus", text_column="text", label_column="sentiment", labels=list(card.labels),
            split={k: tcfg[k] for k in ("test_size", "train_size", "val_size", "seed", "min_confidence") if k in tcfg},
        )
    splits = data.splits_from_card(source)
    if splits.fingerprint != card.lineage.data_fingerprint:
        raise InputError(
            f"teacher version {card.version} was trained on data {card.lineage.data_fingerprint}, but its "
            f"data source {source.path or 'corpus'} now gives {splits.fingerprint}: the file or the split "
            f"code changed; retrain the teacher"
        )
    if splits.validation is None or len(splits.validation) == 0:
        raise InputError(
            f"teacher version {card.version} has no validation split (exported before validation existed): "
            f"students are selected on it; retrain the teacher"
        )
    return splits


@dataclass(frozen=True)
class StudentRows:
    labeled: datasets.Dataset
    transfer: datasets.Dataset  # unlabeled (label -100): teacher targets only
    validation: datasets.Dataset
    test: datasets.Dataset


def student_rows(cfg: DistillConfig, splits: data.Splits) -> StudentRows:
    """The rows of `cfg` out of the teacher's splits.

    Labeled, validation and test rows are prefixes of the teacher's splits (counts capped at their
    sizes, shares of them); the transfer rows are a seeded sample of `splits.transfer`, which
    excludes every train/validation/test text.
    """
    assert splits.validation is not None
    d = cfg.data

    def head(ds: datasets.Dataset, size: float | int) -> datasets.Dataset:
        return ds.select(range(rows_for(size, len(ds))))

    n_transfer = min(d.transfer_size, len(splits.transfer)) if d.use_transfer_set else 0
    transfer = splits.transfer.shuffle(seed=0).select(range(n_transfer))
    # The transfer set's own labels come from low-confidence annotation: teacher targets only.
    transfer = transfer.map(lambda _: {"label": -100}, desc="unlabel")
    return StudentRows(head(splits.train, d.train_size), transfer, head(splits.validation, d.val_size),
                       head(splits.test, d.test_size))


def cached_teacher_logits(
    teacher: Teacher, texts: list[str], fingerprint: str, max_len: int, logit_cache: cache.LogitCache
) -> tuple[list[list[float]], bool]:
    key = cache.cache_key(teacher.weights_sha256, fingerprint, max_len, texts)
    logits, hit = logit_cache.get_or_compute(
        key, len(texts), lambda: evaluate.logits(teacher.model, teacher.tokenizer, texts, max_len, desc="teacher logits")
    )
    return logits.tolist(), hit


def student_to_teacher_ids(student_tok: PreTrainedTokenizerBase, teacher_tok: PreTrainedTokenizerBase) -> torch.Tensor:
    """Lookup table: student token id -> teacher token id (identity unless the vocab was pruned)."""
    tokens = student_tok.convert_ids_to_tokens(list(range(len(student_tok))))
    ids = teacher_tok.convert_tokens_to_ids(tokens)
    return torch.tensor([teacher_tok.unk_token_id if i is None else i for i in ids], dtype=torch.long)


def make_step_loss(distill_loss: DistillLoss, teacher: PreTrainedModel, id_map: torch.Tensor | None) -> train.StepLoss:
    """Student forward + DistillLoss against cached teacher logits (teacher forward only if needed).

    Pruned vocabularies tokenize the corpus into the same wordpieces (see architectures.prune_vocab),
    so mapping ids back through `id_map` feeds the teacher the same, position-aligned sequence.
    """
    hidden, attn = distill_loss.needs_hidden_states, distill_loss.needs_attentions
    placed: dict[str, torch.device] = {}

    def step(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        device = batch["input_ids"].device
        if placed.get("device") != device:
            teacher.to(device)
            distill_loss.to(device)
            placed["device"] = device
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    output_hidden_states=hidden, output_attentions=attn)
        t_out = SimpleNamespace(logits=batch["teacher_logits"].float(), hidden_states=None, attentions=None)
        if hidden or attn:
            ids = batch["input_ids"] if id_map is None else id_map.to(device)[batch["input_ids"]]
            with torch.no_grad():
                full = teacher(input_ids=ids, attention_mask=batch["attention_mask"],
                               output_hidden_states=hidden, output_attentions=attn)
            t_out.hidden_states, t_out.attentions = full.hidden_states, full.attentions
        total, _ = distill_loss(out, t_out, batch["labels"], batch["attention_mask"])
        return total

    return step


def paired_latency(
    teacher: Teacher, student: PreTrainedModel, student_tok: PreTrainedTokenizerBase, texts: list[str],
    max_len: int, runs: int, rounds: int = 2,
) -> tuple[list[LatencyStats], list[LatencyStats]]:
    """Teacher and student latency on the same texts in this process, alternating T,S,S,T,...

    Each side keeps its fastest measurement per batch size: on a shared machine that is the
    one least disturbed by other processes, and both sides get the same treatment.
    """
    t_runs: list[list[LatencyStats]] = []
    s_runs: list[list[LatencyStats]] = []
    for r in range(rounds):
        pair = [("t", teacher.model, teacher.tokenizer), ("s", student, student_tok)]
        for side, model, tok in pair if r % 2 == 0 else pair[::-1]:
            stats = evaluate.latency(model, tok, texts, max_len, runs=runs)
            (t_runs if side == "t" else s_runs).append(stats)
    return fastest(*t_runs), fastest(*s_runs)


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


# ---------------------------------------------------------------- the recipe


def run_student(
    cfg: DistillConfig,
    repo: Path,
    model_name: str = "sentiment",
    *,
    teacher_dir: Path | None = None,
    seeds: list[int] | None = None,
    export: bool = True,
    quick: bool = False,
    cache_dir: Path | None = None,
) -> StudentResult:
    """Distill, evaluate over seeds, measure beside the teacher and (optionally) export the best seed.

    Args:
        cfg: the recipe (student shape, losses, training, data).
        repo: model repository root holding `<model_name>/<cfg.teacher_version>/`.
        model_name: model folder inside `repo`; the student becomes its next version.
        teacher_dir: teacher version folder, overriding `<repo>/<model_name>/<cfg.teacher_version>`.
        seeds: seeds to train; defaults to `cfg.training.seeds`.
        export: write the best seed as the next version of `model_name`.
        quick: fewer latency runs (smoke tests); the training recipe itself is `cfg`'s.
        cache_dir: where teacher logits are cached (default `.distilserve/cache`).
    """
    seeds = list(seeds) if seeds is not None else list(cfg.training.seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. [0, 1, 2]")
    # Eager attention is slower: ask for it only when an attention-transfer loss needs the maps.
    teacher = load_teacher(teacher_dir or teacher_dir_for(repo, model_name, cfg.teacher_version),
                           eager_attention=any(loss.kind == "attention" for loss in cfg.losses))
    check_supported(teacher.model.config.model_type, cfg.student)  # before any data or training
    cfg.student.check_against_teacher(teacher.model.config)
    splits = teacher_splits(teacher.card)
    part = student_rows(cfg, splits)
    max_len = cfg.training.max_seq_len

    logit_cache = cache.LogitCache(cache_dir)
    parts, hits = [], 0
    for rows_part in (part.labeled, part.transfer):
        if len(rows_part) == 0:
            continue
        texts = list(rows_part["text"])
        logits, hit = cached_teacher_logits(teacher, texts, splits.fingerprint, max_len, logit_cache)
        hits += int(hit)
        parts.append(datasets.Dataset.from_dict({"text": texts, "label": list(rows_part["label"]),
                                                 "teacher_logits": logits}))
    rows = datasets.concatenate_datasets(parts)

    test = part.test
    full_test = len(test) == teacher.card.eval_examples and teacher.card.max_seq_len == max_len
    teacher_acc = (teacher.card.accuracy if full_test
                   else evaluate.accuracy(teacher.model, teacher.tokenizer, test, max_len, desc="teacher test"))

    corpus = list(rows["text"])  # what a pruned vocabulary keeps: training texts only, never test
    accs: list[float] = []
    val_accs: list[float] = []
    best: tuple[float, int, PreTrainedModel, PreTrainedTokenizerBase] | None = None
    for seed in seeds:
        torch.manual_seed(seed)
        student, tok = build_student(teacher.model, cfg.student, teacher.tokenizer, corpus)
        assert tok is not None
        distill_loss = DistillLoss(cfg.losses, student_config=student.config, teacher_config=teacher.model.config)
        id_map = None if tok is teacher.tokenizer else student_to_teacher_ids(tok, teacher.tokenizer)
        tcfg = train.TrainConfig(
            epochs=cfg.training.epochs, batch_size=cfg.training.batch_size, lr=cfg.training.lr,
            weight_decay=cfg.training.weight_decay, warmup_ratio=cfg.training.warmup_ratio, seed=seed,
            max_seq_len=max_len,
        )
        stats = train.train(student, train.tokenize(rows, tok, max_len), tok, tcfg,
                            step_loss=make_step_loss(distill_loss, teacher.model, id_map),
                            extra_params=list(distill_loss.parameters()), desc=f"{cfg.name} seed {seed}")
        student.cpu()
        teacher.model.cpu()
        val_acc = evaluate.accuracy(student, tok, part.validation, max_len, desc=f"seed {seed} validation")
        acc = evaluate.accuracy(student, tok, test, max_len, desc=f"seed {seed} test")
        log.info("%s seed %d: validation accuracy %.4f, test accuracy %.4f (final loss %.4f)",
                 cfg.name, seed, val_acc, acc, stats["final_loss"])
        accs.append(acc)
        val_accs.append(val_acc)
        # Selected on validation; test only reports (all seeds, on the card).
        if best is None or val_acc > best[0]:
            best = (val_acc, seed, student, tok)
    assert best is not None
    _, best_seed, student, tok = best
    mean, std = mean_std(accs)

    texts = list(test["text"])
    t_lat, s_lat = paired_latency(teacher, student, tok, texts, max_len, runs=5 if quick else 50, rounds=1 if quick else 2)
    result = StudentResult(
        name=cfg.name, config=cfg, accuracy=mean, accuracy_std=std, accuracy_seeds=accs, best_seed=best_seed,
        val_accuracy_seeds=val_accs, validation_accuracy=best[0], eval_examples=len(test), latency=s_lat, teacher_latency=t_lat,
        teacher_accuracy=teacher_acc, parameters=evaluate.count_parameters(student), bytes=weight_bytes(student),
        train_rows=len(part.labeled), transfer_rows=len(part.transfer), speedup=speedups(t_lat, s_lat),
        accuracy_ratio=accuracy_ratio(mean, teacher_acc), teacher_version=teacher.card.version,
        data_fingerprint=splits.fingerprint, cache_hits=hits, model=student, tokenizer=tok,
    )
    if export:
        export_student(result, teacher.card, repo, model_name)
    return result


def export_student(result: StudentResult, teacher_card: ModelCard, repo: Path, model_name: str = "sentiment") -> Path:
    """Write `result`'s best-seed model as the next version; fills `result.version_dir`/`card`."""
    if result.model is None or result.tokenizer is None:
        raise ValueError(f"{result.name}: no model kept to export")
    version_dir, card = export.export_version(
        result.model, result.tokenizer, repo=repo, model_name=model_name,
        card_fields={
            "kind": "student",
            "labels": list(teacher_card.labels),
            "max_seq_len": result.config.training.max_seq_len,
            "accuracy": result.accuracy,
            "accuracy_std": result.accuracy_std,
            "accuracy_seeds": result.accuracy_seeds,
            "eval_examples": result.eval_examples,
            "latency": result.latency,
            "measured_on": evaluate.machine(),
            "validation_accuracy": result.validation_accuracy,
            "data_source": teacher_card.data_source,
        },
        lineage_fields={
            "data_fingerprint": result.data_fingerprint,
            "config": {"recipe": "student", "best_seed": result.best_seed, "selected_on": "validation",
                       **result.config.model_dump(mode="json")},
            "teacher_version": result.teacher_version,
            "base_model": teacher_card.lineage.base_model,
        },
    )
    result.version_dir, result.card, result.bytes = version_dir, card, card.bytes
    return version_dir

