"""The learned propensity model: gradient-boosted trees (LightGBM) that give, per customer and product, the
calibrated probability that the customer adds the product next month.

Two boosters: a binary one, "adds any product next month", Platt-scaled on the held-out month (a logistic fit of the
outcome on the raw score's log-odds, weighted like the population); and a multiclass one, "which product, given an
add" (trained on adds of products not held, so it gives the products held next to nothing; not renormalised:
a customer who holds what people like them add gets a low share for the rest). Propensity = P(adds) x the
chance the product is among an adder's picks: 1 - (1 - share)^k, with k the products an adder adds on average
(about k x share when the share is small; never above P(adds)). Products the choice model has too few adds of are
left out (NaN): the rule-based score ranks them (cold start).

LightGBM rather than scikit-learn's HistGradientBoostingClassifier: on the same training rows it fitted several
times faster at a better held-out MAP@7, predicting and memory about even (bench/RESULTS.md); its model is stored as
LightGBM's own text format (no pickle: loading a model runs no code), and pred_contrib gives each feature's share of
a decision (the reasons phase 2 shows). It needs libgomp at run time (Debian's libgomp1; the Dockerfile installs it).
"""

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np

from app.recommendations.learned import compiled
from app.recommendations.learned.features import FeatureRows, FeatureSpec, feature_matrix

FORMAT = 1

REASON_ROUNDS = 20
"""The reasons are the top contributions in the model's first boosting rounds (the strongest splits; the later
rounds refine), which bounds their cost (0.35 s of CPU for 5,000 customers x 18 products against 1.8 s over all
100 rounds); the propensities use every round."""


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))


@dataclass
class Calibration:
    """P(adds) = sigmoid(slope x logit(raw) + intercept); `adds_per_adder` (k) spreads it over products."""

    slope: float = 1.0
    intercept: float = 0.0
    adds_per_adder: float = 1.0

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return _sigmoid(self.slope * _logit(raw) + self.intercept)


def fit_platt(raw: np.ndarray, outcome: np.ndarray, weight: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Slope and intercept of a weighted logistic regression of `outcome` on logit(raw), with Platt's smoothed
    targets (so that a held-out month the scores separate perfectly still gives finite numbers); Newton's method
    with halving steps: no randomness, the same inputs give the same numbers."""
    x = _logit(raw)
    positives, negatives = np.sum(weight * outcome), np.sum(weight * (1 - outcome))
    target = np.where(outcome > 0.5, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def loss(a: float, b: float) -> float:
        p = np.clip(_sigmoid(a * x + b), 1e-12, 1 - 1e-12)
        return float(-np.sum(weight * (target * np.log(p) + (1 - target) * np.log(1 - p))))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iterations):
        p = _sigmoid(a * x + b)
        g, h = weight * (p - target), weight * p * (1 - p) + 1e-12
        grad = np.array([np.sum(g * x), np.sum(g)])
        hess = np.array([[np.sum(h * x * x), np.sum(h * x)], [np.sum(h * x), np.sum(h)]]) + np.eye(2) * 1e-9
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-4 and loss(a - scale * step[0], b - scale * step[1]) > current:
            scale /= 2
        a, b = a - scale * step[0], b - scale * step[1]
        previous, current = current, loss(a, b)
        if previous - current < 1e-10 * max(1.0, abs(previous)):
            break
    return float(a), float(b)


@dataclass
class PropensityModel:
    """A trained model with everything needed to use it again: the feature spec and category vocabularies it
    was trained on, the products the choice booster knows, the two boosters and the calibration."""

    spec: FeatureSpec
    vocabularies: list[list[str]]
    classes: list[str]
    choice: lightgbm.Booster | None
    """None when the model knows one product (every add's choice)."""
    any_add: lightgbm.Booster
    calibration: Calibration
    params: dict[str, Any] = field(default_factory=dict)
    _path_tables: dict[int | None, Any] = field(default_factory=dict, repr=False, compare=False)
    _compiled: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def compile(self, cache_dir: Path | None, *, compile_missing: bool = False) -> bool:
        """Predict with the boosters compiled to native code (app/recommendations/learned/compiled.py: the same
        numbers, several times faster): loaded from `cache_dir`, else (`compile_missing`) compiled now and cached
        there. Returns whether both are; where not, LightGBM predicts. The reasons' path tables are built here too
        (`_class_paths`: half a second for the demo's model, once per model and process), with the rest of what
        readies the model to score, not by the first chunk a refresh scores."""
        for name, booster in (("choice", self.choice), ("any_add", self.any_add)):
            if booster is not None and name not in self._compiled:
                found = compiled.predictor(booster.model_to_string(), cache_dir, compile_missing=compile_missing)
                if found is not None:
                    self._compiled[name] = found
        if self.choice is not None and "leaves" not in self._compiled:  # the reasons' leaves (`_leaves`)
            text = compiled.leaf_model_text(self.choice.model_to_string(num_iteration=REASON_ROUNDS))
            found = compiled.predictor(text, cache_dir, compile_missing=compile_missing, raw_score=True)
            if found is not None:
                self._compiled["leaves"] = found
        if self.choice is not None:
            self._class_paths(REASON_ROUNDS)
        return all(b is None or n in self._compiled for n, b in (("choice", self.choice), ("any_add", self.any_add)))

    def _predict(self, name: str, booster: lightgbm.Booster, x: np.ndarray, threads: int) -> np.ndarray:
        found = self._compiled.get(name)
        return found(x, threads) if found is not None else booster.predict(x, num_threads=threads)

    def matrix(self, rows: FeatureRows) -> np.ndarray:
        return feature_matrix(rows, self.vocabularies)

    def propensities(self, rows: FeatureRows, matrix: np.ndarray | None = None, threads: int = 0) -> np.ndarray:
        """Calibrated P(adds the product next month), rows x spec.products: 0 for a product held, NaN for one the
        model does not know (new, or too rarely added to learn from). `threads`: LightGBM's (0: its default, one per
        core; the same numbers either way, a row is predicted by one thread)."""
        x = self.matrix(rows) if matrix is None else matrix
        n, held = len(rows), rows.held()
        share = np.full((n, len(self.spec.products)), np.nan)
        if n == 0:
            return share
        position = {code: i for i, code in enumerate(self.spec.products)}
        columns = [position[c] for c in self.classes]
        if self.choice is not None:
            share[:, columns] = self._predict("choice", self.choice, x, threads).reshape(n, len(columns))
        else:
            share[:, columns] = 1.0
        p_any = self.calibration.apply(self._predict("any_add", self.any_add, x, threads))
        out = p_any[:, None] * (1.0 - (1.0 - share) ** self.calibration.adds_per_adder)
        out[held] = 0.0
        return out

    def contributions(self, matrix: np.ndarray, rounds: int | None = None, pairs=None) -> np.ndarray:
        """Each feature's contribution to each known product's raw choice score (rows x classes x features + 1,
        the last the bias), by the decision paths the rows take: along each tree's path from root to leaf, every
        split moves the node's expected score to its child's, and that move is the split feature's contribution
        (Saabas' attribution; summed over the trees of the first `rounds` boosting rounds, with the roots' scores
        as the bias, it adds up to the raw score as LightGBM's SHAP values do). One leaf look-up per tree and row
        (`pred_leaf`), then each leaf's path read from tables built once per model: a fraction of the cost of
        pred_contrib's SHAP values, which weigh every subset of a path's features. The top ones are the reasons of
        a decision. With `pairs` (row indices, class indices): only those (row, class) pairs, pairs x features + 1,
        the same numbers (the rows' leaves looked up only in their class's trees)."""
        width = len(self.spec.names()) + 1
        n = len(matrix)
        if pairs is None:
            rows = np.repeat(np.arange(n), max(len(self.classes), 1))
            pairs = rows, np.tile(np.arange(max(len(self.classes), 1)), n)
            return self.contributions(matrix, rounds, pairs).reshape(n, -1, width)
        at, of = (np.asarray(p, dtype=np.intp) for p in pairs)
        out = np.zeros((len(at), width))
        if self.choice is None or not len(at):
            return out
        classes = len(self.classes)
        tables, bias = self._paths(rounds)
        used = np.unique(at)  # the rows some pair needs, and each pair's row among them
        leaves = self._leaves(matrix[used], rounds, len(tables))
        row_of = np.searchsorted(used, at)
        for c in range(classes):  # each class's trees: their leaves' path contributions, looked up per pair
            mine = np.flatnonzero(of == c)
            if not len(mine):
                continue
            rows, total = row_of[mine], np.zeros((len(mine), width))
            for t in range(c, leaves.shape[1], classes):
                total += tables[t][leaves[rows, t]]
            out[mine] = total
        out[:, -1] += bias[: leaves.shape[1]].reshape(-1, classes).sum(axis=0)[of]
        return out

    def top_contributions(
        self, matrix: np.ndarray, rounds: int | None, pairs, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per (row, class) pair of `pairs`: the feature of the largest contribution (`contributions`) among those
        `allowed` (pairs x features, bool), and whether it is positive; the first such feature on a tie, as
        `np.argmax` over `contributions` masked with -inf gives it. The same features, at a fraction of the cost:
        only the features a class's trees split on are summed (the others contribute exactly nothing, so they
        are never a positive largest one), each in the same order of trees, so to the same bits."""
        at, of = (np.asarray(p, dtype=np.intp) for p in pairs)
        top, positive = np.zeros(len(at), dtype=np.intp), np.zeros(len(at), dtype=bool)
        if self.choice is None or not len(at):
            return top, positive
        per_class = self._class_paths(rounds)
        used = np.unique(at)
        leaves = self._leaves(matrix[used], rounds, len(self._paths(rounds)[0]))
        row_of = np.searchsorted(used, at)
        for c, (features, tables, trees) in enumerate(per_class):
            mine = np.flatnonzero(of == c)
            if not len(mine) or not len(features):
                continue
            rows, total = row_of[mine], np.zeros((len(mine), len(features)))
            for table, t in zip(tables, trees, strict=True):
                total += table[leaves[rows, t]]
            masked = np.where(allowed[mine][:, features], total, -np.inf)
            best = masked.argmax(axis=1)
            top[mine] = features[best]
            positive[mine] = masked[np.arange(len(mine)), best] > 0
        return top, positive

    def _leaves(self, x: np.ndarray, rounds: int | None, trees: int) -> np.ndarray:
        """The leaf each row reaches in each of the choice booster's first `trees` trees (its first `rounds`
        rounds): rows x trees, LightGBM's `pred_leaf`; from the compiled leaves' model (`compile`: the
        first REASON_ROUNDS rounds' trees, the same leaves) where there is one."""
        found = self._compiled.get("leaves") if rounds == REASON_ROUNDS else None
        if found is not None and len(x):
            leaves = found(x, 1)
        else:
            leaves = self.choice.predict(x, pred_leaf=True, num_iteration=rounds, num_threads=1)
        return np.asarray(leaves, dtype=np.intp).reshape(len(x), -1)[:, :trees]

    def _class_paths(self, rounds: int | None) -> list[tuple[np.ndarray, np.ndarray, list[int]]]:
        """Per class of the choice booster: the features its trees of the first `rounds` rounds split on
        (ascending), its trees' path tables over those features only (`_paths`: trees x leaves x features), and
        those trees' positions among the booster's."""
        key = ("class", rounds)
        cached = self._path_tables.get(key)
        if cached is not None:
            return cached
        tables, _ = self._paths(rounds)
        classes, out = len(self.classes), []
        for c in range(classes):
            trees = list(range(c, len(tables), classes))
            features = np.flatnonzero(np.any(tables[trees][:, :, :-1] != 0, axis=(0, 1)))
            out.append((features, np.ascontiguousarray(tables[trees][:, :, features]), trees))
        self._path_tables[key] = out
        return out

    def _paths(self, rounds: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Per tree of the choice booster (its first `rounds` rounds) and leaf: the contribution of each feature
        along the path from the root to the leaf (trees x leaves x features + 1), and each tree's root score.
        Built once per model and number of rounds."""
        cached = self._path_tables.get(rounds)
        if cached is not None:
            return cached
        classes, bias_column = len(self.classes), len(self.spec.names())
        trees = self.choice.dump_model(num_iteration=rounds)["tree_info"]
        trees = trees[: len(trees) - len(trees) % classes]
        paths: list[list[list[tuple[int, float]]]] = []
        roots = np.zeros(len(trees))
        for t, tree in enumerate(trees):
            root = tree["tree_structure"]
            leaves: dict[int, list[tuple[int, float]]] = {}
            roots[t] = root.get("internal_value", root.get("leaf_value", 0.0))
            stack = [(root, [])]
            while stack:
                node, path = stack.pop()
                if "leaf_index" in node or "split_feature" not in node:
                    leaves[node.get("leaf_index", 0)] = path
                    continue
                value = node["internal_value"]
                for child in (node["left_child"], node["right_child"]):
                    child_value = child.get("internal_value", child.get("leaf_value"))
                    stack.append((child, [*path, (node["split_feature"], child_value - value)]))
            paths.append([leaves[i] for i in range(len(leaves))])
        most = max(len(tree) for tree in paths)
        tables = np.zeros((len(trees), most, bias_column + 1))
        for t, tree in enumerate(paths):
            for leaf, path in enumerate(tree):
                for feature, move in path:
                    tables[t, leaf, feature] += move
        self._path_tables[rounds] = tables, roots
        return tables, roots

    def to_bytes(self) -> bytes:
        """The whole model as bytes (deterministic: the same model gives the same bytes)."""
        document = {
            "format": FORMAT,
            "spec": self.spec.to_json(),
            "vocabularies": self.vocabularies,
            "classes": self.classes,
            "calibration": self.calibration.__dict__,
            "params": self.params,
            "choice": self.choice.model_to_string() if self.choice else None,
            "any_add": self.any_add.model_to_string(),
        }
        return zlib.compress(json.dumps(document, sort_keys=True).encode(), 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> "PropensityModel":
        document = json.loads(zlib.decompress(data))
        if document["format"] != FORMAT:
            raise ValueError(f"unknown model format {document['format']}")
        return cls(
            FeatureSpec.from_json(document["spec"]),
            document["vocabularies"],
            document["classes"],
            lightgbm.Booster(model_str=document["choice"]) if document["choice"] else None,
            lightgbm.Booster(model_str=document["any_add"]),
            Calibration(**document["calibration"]),
            document["params"],
        )
