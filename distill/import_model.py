"""Import an existing Hugging Face sequence-classification folder as the next version of a model.

Nothing on the card is taken on trust: accuracy is measured on the given labelled file, latency
at batch 1 and 32 on this machine, parameters and bytes from the weights written. Refused before
anything is measured: pickle-only weights, a folder that is not a classifier, and labels that
differ from the model's existing versions (both lists in the message). Without an eval file,
the version is measured on the test split its model's cards record (the teacher's).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from distill.errors import InputError
from distilserve.core.card import CARD_FILENAME, DataSource, ModelCard

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)


def model_labels(config: object) -> list[str]:
    """Class names in output order from a transformers config's id2label."""
    id2label = getattr(config, "id2label", None) or {}
    n = int(getattr(config, "num_labels", len(id2label)))
    if n < 2 or sorted(int(k) for k in id2label) != list(range(n)):
        raise InputError(f"the model's config has no usable id2label for {n} labels: {id2label}")
    return [str(id2label[i]) for i in range(n)]


def version_cards(model_dir: Path) -> list[ModelCard]:
    """Cards of a model's versions, newest first (none for a new model)."""
    if not model_dir.is_dir():
        return []
    versions = sorted((int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and (p / CARD_FILENAME).is_file()),
                      reverse=True)
    return [ModelCard.read(model_dir / str(v)) for v in versions]


def existing_labels(cards: list[ModelCard]) -> tuple[str, list[str]] | None:
    """(version, labels) of the newest version, or None for a new model."""
    return (cards[0].version, list(cards[0].labels)) if cards else None


def check_labels(new: list[str], existing: tuple[str, list[str]] | None, model_name: str) -> None:
    """Refuse labels (or a label order) that differ from the model's versions: serving compares them."""
    if existing is not None and existing[1] != new:
        raise InputError(
            f"the imported model's labels {new} differ from version {existing[0]} of {model_name!r}, "
            f"which has {existing[1]}: every version of a model must have the same labels in the same order"
        )


def _eval_rows(eval_file: Path | None, text_column: str, label_column: str, labels: list[str],
               cards: list[ModelCard]) -> tuple[datasets.Dataset, DataSource, str]:
    """(rows to measure on, their data source, fingerprint): the file, else the newest recorded test split.

    Without a file, the version is measured on the same test split as the model's teacher, so
    the accuracies of all its versions compare like with like.
    """
    from distill import data

    if eval_file is not None:
        source = DataSource(path=str(Path(eval_file).resolve()), format=data.detect_format(Path(eval_file)),  # type: ignore[arg-type]
                            text_column=text_column, label_column=label_column, labels=labels, split={"eval_size": 0})
        rows, fingerprint = data.recorded_test_rows(source)
        return rows, source.model_copy(update={"split": {"eval_size": len(rows)}}), fingerprint
    card = next((c for c in cards if c.data_source is not None and "test_size" in c.data_source.split), None)
    if card is None or card.data_source is None:
        raise InputError("--eval FILE is needed: the model has no version whose card records a data split to test on")
    splits = data.splits_from_card(card.data_source)
    if splits.fingerprint != card.lineage.data_fingerprint:
        raise InputError(f"the data of version {card.version} ({card.data_source.path}) changed since it was "
                         f"recorded; pass --eval FILE")
    return splits.test, card.data_source, card.lineage.data_fingerprint


def import_model(
    source: Path, repo: Path, model_name: str, eval_file: Path | None, *, text_column: str = "text",
    label_column: str = "label",
    max_seq_len: int = 128, version: str | None = None, latency_runs: int = 50,
) -> tuple[Path, ModelCard]:
    """Check, measure and export `source` as `<repo>/<model_name>/<next version>/`.

    `eval_file` None: measure on the test split recorded on the model's newest card that has one.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from distill import evaluate, export, models

    source = Path(source).resolve()
    models.check_model_folder(source)
    config = AutoConfig.from_pretrained(source)
    labels = model_labels(config)
    cards = version_cards(Path(repo) / model_name)
    check_labels(labels, existing_labels(cards), model_name)
    evalset, data_source, fingerprint = _eval_rows(eval_file, text_column, label_column, labels, cards)
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and max_seq_len > limit:
        raise InputError(f"--max-seq-len ({max_seq_len}) exceeds the model's max_position_embeddings ({limit})")

    model = AutoModelForSequenceClassification.from_pretrained(source, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    acc = evaluate.accuracy(model, tokenizer, evalset, max_seq_len, desc="import eval")
    lat = evaluate.latency(model, tokenizer, list(evalset["text"]), max_seq_len, runs=latency_runs)
    return export.export_version(
        model, tokenizer, repo=repo, model_name=model_name, version=version,
        card_fields={
            "kind": "imported",
            "labels": labels,
            "max_seq_len": max_seq_len,
            "accuracy": acc,
            "accuracy_seeds": [acc],
            "eval_examples": len(evalset),
            "latency": lat,
            "measured_on": evaluate.machine(),
            "data_source": data_source,
        },
        lineage_fields={
            "data_fingerprint": fingerprint,
            "config": {"recipe": "import", "source": str(source), "model_type": config.model_type,
                       "max_seq_len": max_seq_len},
            "base_model": str(source),
        },
    )
