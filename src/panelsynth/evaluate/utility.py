"""Detection and utility metrics: the gradient-boosting classifier two-sample test (C2ST) and
train-synthetic-test-real (TSTR); sdmetrics' logistic C2ST is in :mod:`.sdm`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from panelsynth.evaluate.base import Metric, MetricResult, single_thread
from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.encoding import labels, model_matrix
from panelsynth.values import label_text

#: Rows per side used by the classifier two-sample tests (random sample above it).
C2ST_MAX_ROWS = 10_000
#: Training rows of the TSTR classifier (random sample above it).
TSTR_MAX_ROWS = 50_000


class GradientBoostingC2ST(Metric):
    """Classifier two-sample test with histogram gradient boosting (sees joint structure).

    Real and synthetic rows (equal numbers, at most :data:`C2ST_MAX_ROWS` each) are labelled and
    a gradient-boosting classifier (native missing values and categorical splits) is
    cross-validated (3 folds, as LogisticDetection); the mean ROC AUC is mapped to
    ``1 - 2|AUC - 0.5|`` clipped to
    [0, 1]: 1 = indistinguishable, 0 = perfectly separable — the scale of sdmetrics'
    LogisticDetection.
    """

    name = "c2st_gradient_boosting"
    description = (
        "1 - 2|AUC - 0.5| of a cross-validated gradient-boosting real/synthetic classifier"
    )

    def __init__(self, columns: EvalColumns, seed: int = 42, folds: int = 3) -> None:
        super().__init__(columns)
        self.seed = seed
        self.folds = folds

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        with single_thread():
            return self._compute(real, synthetic)

    def _compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import StratifiedKFold

        rng = np.random.default_rng(self.seed)
        n = min(len(real), len(synthetic), C2ST_MAX_ROWS)
        if n < 2 * self.folds:
            return self.nan(f"too few rows for a {self.folds}-fold C2ST ({n} per side)")
        r = real.iloc[rng.choice(len(real), n, replace=False)]
        s = synthetic.iloc[rng.choice(len(synthetic), n, replace=False)]
        (xr, xs), nominal = model_matrix(self.columns, [r, s])
        x = np.vstack([xr, xs])
        y = np.r_[np.ones(n), np.zeros(n)]
        aucs = []
        kf = StratifiedKFold(n_splits=self.folds, shuffle=True, random_state=self.seed)
        for tr, te in kf.split(x, y):
            clf = _gradient_boosting(nominal, self.seed)
            clf.fit(x[tr], y[tr])
            aucs.append(roc_auc_score(y[te], clf.predict_proba(x[te])[:, 1]))
        auc = float(np.mean(aucs))
        return self.result(
            1.0 - 2.0 * abs(auc - 0.5),
            extra={
                "auc": auc,
                "auc_folds": [float(a) for a in aucs],
                "rows_per_side": n,
                "sampled": n < max(len(real), len(synthetic)),
            },
        )


def _gradient_boosting(nominal: np.ndarray, seed: int) -> Any:
    """The gradient-boosting classifier of the C2ST and TSTR (small: 60 trees of 15 leaves)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=60,
        learning_rate=0.15,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        categorical_features=nominal if nominal.any() else None,
        random_state=seed,
        early_stopping=False,
    )


class TrainSyntheticTestReal(Metric):
    """Utility: ROC AUC on real test rows of a classifier of ``target`` trained on the candidate.

    ``compute(real=test rows, synthetic=training rows)``. With real training rows this is the
    train-real-test-real (TRTR) reference. The classifier is histogram gradient boosting (native
    missing values); features are every other evaluated column; multi-class targets use the
    one-vs-rest macro AUC. Rows whose target is missing are dropped.
    """

    name = "tstr_auc"
    description = "ROC AUC on real rows of a classifier trained on the candidate rows"

    def __init__(self, columns: EvalColumns, target: str, seed: int = 42) -> None:
        super().__init__(columns)
        self.target = target
        self.seed = seed

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        with single_thread():
            return self._compute(real, synthetic)

    def _compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        from sklearn.metrics import balanced_accuracy_score, roc_auc_score

        t = self.target
        feats = self.columns.without([t])
        train = synthetic[synthetic[t].notna()]
        test = real[real[t].notna()]
        if len(train) > TSTR_MAX_ROWS:
            train = train.sample(TSTR_MAX_ROWS, random_state=self.seed)
        classes = sorted(set(test[t]), key=str)
        train_classes = set(train[t])
        if len(classes) < 2:
            return self.nan(f"the real test rows have a single value of {t!r}")
        if len(train_classes) < 2:
            return self.nan(f"the training rows have a single value of {t!r} ({len(train)} rows)")
        (xtr, xte), nominal = model_matrix(feats, [train, test])
        clf = _gradient_boosting(nominal, self.seed)
        ytr = labels(train[t]).to_numpy()
        yte = labels(test[t]).to_numpy()
        clf.fit(xtr, ytr)
        proba = clf.predict_proba(xte)
        model_classes = list(clf.classes_)
        full = np.zeros((len(test), len(classes)))
        class_labels = [label_text(c) for c in classes]
        for j, c in enumerate(class_labels):
            if c in model_classes:
                full[:, j] = proba[:, model_classes.index(c)]
        if len(class_labels) == 2:
            auc = roc_auc_score(yte == class_labels[1], full[:, 1])
        else:
            full = full / np.clip(full.sum(axis=1, keepdims=True), 1e-12, None)
            auc = roc_auc_score(yte, full, multi_class="ovr", average="macro", labels=class_labels)
        bacc = balanced_accuracy_score(yte, clf.predict(xte))
        return self.result(
            float(auc),
            extra={
                "target": t,
                "auc": float(auc),
                "balanced_accuracy": float(bacc),
                "train_rows": int(len(train)),
                "test_rows": int(len(test)),
                "classes": class_labels,
            },
        )
