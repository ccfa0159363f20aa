"""The bar every student must clear: TF-IDF + logistic regression on the same splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from distill.data import Splits
from distill.evaluate import time_batches
from distilserve.core.card import LatencyStats


@dataclass(frozen=True)
class BaselineResult:
    accuracy: float
    eval_examples: int
    latency: list[LatencyStats]
    parameters: int  # coefficients + intercepts (the vocabulary itself is not counted)
    vocabulary: int


def fit_baseline(splits: Splits, *, seed: int = 0) -> Pipeline:
    """Word 1-2 grams TF-IDF (sublinear tf) + multinomial logistic regression on `splits.train`."""
    pipe = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        LogisticRegression(C=4.0, max_iter=2000, random_state=seed),
    )
    pipe.fit(list(splits.train["text"]), np.asarray(splits.train["label"]))
    return pipe


def run_baseline(splits: Splits, *, latency_runs: int = 50, seed: int = 0) -> BaselineResult:
    """Fit on train, accuracy on test, latency of `predict_proba` at batch 1 and 32."""
    pipe = fit_baseline(splits, seed=seed)
    texts = list(splits.test["text"])
    acc = float((pipe.predict(texts) == np.asarray(splits.test["label"])).mean())
    clf: LogisticRegression = pipe[-1]
    return BaselineResult(
        accuracy=acc,
        eval_examples=len(texts),
        latency=time_batches(pipe.predict_proba, texts, runs=latency_runs),
        parameters=int(clf.coef_.size + clf.intercept_.size),
        vocabulary=len(pipe[0].vocabulary_),
    )
