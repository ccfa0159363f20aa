"""Import an existing Hugging Face sequence-classification folder as the next version of a model.

Nothing on the card is taken on trust: accuracy is measured on the given labelled file, latency
at batch 1 and 32 on this machine, parameters and bytes from the weights written. Refused before
anything is measured: pickle-only weights, a folder that is not a classifier, and labels that
differ from the model's existing versions (both lists in the message).
"""

from __future__ import annotations

import logging
from pathlib import Path

from distill.errors import InputError
from distilserve.core.card import CARD_FILENAME, ModelCard

log = logging.getLogger(__name__)


def model_labels(config: object) -> list[str]:
    """Class names in output order from a transformers config's id2label."""
    id2label = getattr(config, "id2label", None) or {}
    n = int(getattr(config, "num_labels", len(id2label)))
    if n < 2 or sorted(int(k) for k in id2label) != list(range(n)):
        raise InputError(f"the model's config has no usable id2label for {n} labels: {id2label}")
    return [str(id2label[i]) for i in range(n)]


def existing_labels(model_dir: Path) -> tuple[str, list[str]] | None:
    """(version, labels) of the newest version of a model that has a card, or None for a new model."""
    if not model_dir.is_dir():
        return None
    versions = sorted((int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and (p / CARD_FILENAME).is_file()),
                      reverse=True)
    if not versions:
        return None
    card = ModelCard.read(model_dir / str(versions[0]))
    return card.version, list(card.labels)


def check_labels(new: list[str], existing: tuple[str, list[str]] | None, model_name: str) -> None:
    """Refuse labels (or a label order) that differ from the model's versions: serving compares them."""
    if existing is not None and existing[1] != new:
        raise InputError(
            f"the imported model's labels {new} differ from version {existing[0]} of {model_name!r}, "
            f"which has {existing[1]}: every version of a model must have the same labels in the same order"
        )


def import_model(
    source: Path, repo: Path, model_name: str, eval_file: Path, *, text_column: str, label_column: str,
    max_seq_len: int = 128, version: str | None = None, latency_runs: int = 50,
) -> tuple[Path, ModelCard]:
    """Check, measure and export `source` as `<repo>/<model_name>/<next version>/`."""
    import datasets
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from distill import data, evaluate, export, models

    source = Path(source).resolve()
    models.check_model_folder(source)
    config = AutoConfig.from_pretrained(source)
    labels = model_labels(config)
    check_labels(labels, existing_labels(Path(repo) / model_name), model_name)
    fmt = data.detect_format(Path(eval_file))
    rows, _ = data.clean_rows(data.read_table(Path(eval_file), fmt), text_column, label_column, labels,
                              source=str(eval_file))
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and max_seq_len > limit:
        raise InputError(f"--max-seq-len ({max_seq_len}) exceeds the model's max_position_embeddings ({limit})")

    model = AutoModelForSequenceClassification.from_pretrained(source, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    evalset = datasets.Dataset.from_pandas(rows, preserve_index=False)
    acc = evaluate.accuracy(model, tokenizer, evalset, max_seq_len, desc="import eval")
    texts = list(rows["text"])
    lat = evaluate.latency(model, tokenizer, texts, max_seq_len, runs=latency_runs)
    source_card = data.DataSource(path=str(Path(eval_file).resolve()), format=fmt,  # type: ignore[arg-type]
                                  text_column=text_column, label_column=label_column, labels=labels,
                                  split={"eval_size": len(rows)})
    return export.export_version(
        model, tokenizer, repo=repo, model_name=model_name, version=version,
        card_fields={
            "kind": "imported",
            "labels": labels,
            "max_seq_len": max_seq_len,
            "accuracy": acc,
            "accuracy_seeds": [acc],
            "eval_examples": len(rows),
            "latency": lat,
            "measured_on": evaluate.machine(),
            "data_source": source_card,
        },
        lineage_fields={
            "data_fingerprint": data.fingerprint({"eval": True, "labels": labels}, [rows]),
            "config": {"recipe": "import", "source": str(source), "model_type": config.model_type,
                       "max_seq_len": max_seq_len},
            "base_model": str(source),
        },
    )
