"""Kernel latency regressors: tree ensembles trained with scikit-learn, run with numpy alone.

Training uses scikit-learn (the ``train`` extra). Once fitted, an ensemble is exported to plain
arrays (per node: feature, threshold, left, right, value; stored per split and per leaf, see
:meth:`TreeRegressor.to_arrays`) and every prediction — right after
``fit`` or after ``load`` — goes through the same vectorised numpy evaluator (or, when a
predictor asks for it, onnxruntime's tree-ensemble op: :mod:`~edgemeter.predictor.onnx_forests`),
so a predictor package needs neither scikit-learn nor pickle: it is data, and loading it
executes no code.

By default the trees learn log(latency / cost baseline), where the baseline is a non-negative
linear model on FLOPS and BYTES (``transform="ratio"``). Kernel latencies span four orders of
magnitude and the figures that matter (RMSPE, share within ±10%) are relative, so a squared error
in log space is the loss that matches them; the baseline takes out the part trees are worst at
(a smooth trend they can only approximate by steps). ``transform="log"`` and ``"linear"`` remain.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from edgemeter.errors import ConfigError, ModelError, import_extra

FORMAT = "edgemeter-regressor/3"
# Earlier files, still read: format 1 stored every array for every node (twice the bytes),
# format 2 each right child as a node index (a third more bytes zipped than an offset).
_FORMAT_1 = "edgemeter-regressor/1"
_FORMAT_2 = "edgemeter-regressor/2"
# The arrays that give a split's children, by format (a split's left child is the next node
# from format 2 on).
_CHILD_ARRAYS = {FORMAT: ("right_offset",), _FORMAT_2: ("right",), _FORMAT_1: ("left", "right")}
# Pairs (row, tree) walked at once: working arrays stay around 10 MB, whatever the batch size.
_PAIRS_PER_CHUNK = 1 << 18
# A real forest takes a few MB; refuse to inflate anything beyond this.
_MAX_ARRAY_BYTES = 512 << 20
# Largest change of the trees' summed output that half-precision leaves may cause: in log space,
# 0.2 % of a latency, a tenth of the timing noise.
HALF_LEAF_TOLERANCE = 2e-3
# Below this many rows, sorting out duplicates costs more than it can save.
_DEDUP_MIN_ROWS = 64
# Tree levels walked between checks for finished pairs: a check costs as much as a step, and a
# finished pair only loops on its leaf.
_STEPS_PER_CHECK = 3


@dataclass(frozen=True)
class Forest:
    """Trees as flat arrays; prediction = ``offset + scale * sum of the leaves reached``.

    Node ``i`` tests ``x[feature[i]] <= threshold[i]`` and goes to ``left[i]`` or ``right[i]``
    (indices into the same arrays); a leaf has ``left == right == -1`` and holds ``value[i]``.
    ``roots[k]`` is the first node of tree ``k``; children always come after their parent, which
    is what makes a loaded file safe to walk (no cycles).
    """

    feature: np.ndarray    # intp
    threshold: np.ndarray  # float64
    left: np.ndarray       # intp
    right: np.ndarray      # intp
    value: np.ndarray      # float64
    roots: np.ndarray      # intp
    offset: float = 0.0
    scale: float = 1.0

    @classmethod
    def from_sklearn(cls, trees: Sequence[Any], offset: float, scale: float) -> Forest:
        """Concatenate fitted sklearn ``DecisionTreeRegressor`` objects."""
        parts, roots, start = [], [], 0
        for tree in trees:
            t = tree.tree_
            internal = t.children_left >= 0
            shift = np.where(internal, start, 0)
            parts.append((np.where(internal, t.feature, -1), t.threshold,
                          t.children_left + shift, t.children_right + shift, t.value[:, 0, 0]))
            roots.append(start)
            start += t.node_count
        feature, threshold, left, right, value = (np.concatenate(col) for col in zip(*parts))
        return cls(feature.astype(np.intp), threshold.astype(np.float64), left.astype(np.intp),
                   right.astype(np.intp), value.astype(np.float64),
                   np.asarray(roots, dtype=np.intp), float(offset), float(scale))

    @property
    def n_trees(self) -> int:
        return int(self.roots.size)

    @property
    def n_nodes(self) -> int:
        return int(self.value.size)

    def node_trees(self, nodes: np.ndarray | None = None) -> np.ndarray:
        """The tree each node (of ``nodes``, default all) belongs to (trees are stored one after
        another from their root)."""
        nodes = np.arange(self.n_nodes) if nodes is None else nodes
        return np.searchsorted(self.roots, nodes, "right") - 1

    def validate(self, n_features: int) -> None:
        """Raise ValueError unless the arrays form well-formed trees over ``n_features``."""
        n = self.n_nodes
        if not all(a.ndim == 1 and a.size == n for a in
                   (self.feature, self.threshold, self.left, self.right)):
            raise ValueError("node arrays differ in length")
        if self.roots.size == 0 or self.roots[0] != 0 or np.any(np.diff(self.roots) <= 0) \
                or self.roots[-1] >= n:
            raise ValueError("tree roots are not increasing node indices")
        leaf = self.left < 0
        if np.any(leaf != (self.right < 0)) or np.any(self.feature[leaf] != -1):
            raise ValueError("a node is half leaf, half split")
        # Checked on the splits' indices only: a package holds ~10^6 nodes, loaded per command.
        split = np.flatnonzero(~leaf)
        ends = np.append(self.roots[1:], n)[self.node_trees(split)]
        for child in (self.left[split], self.right[split]):
            if np.any(child <= split) or np.any(child >= ends):
                raise ValueError("a child index points backwards or outside its tree")
        if np.any(self.feature[split] < 0) or np.any(self.feature >= n_features):
            raise ValueError(f"a split uses a feature outside 0..{n_features - 1}")
        if not (np.isfinite(self.value).all() and np.isfinite(self.offset)
                and np.isfinite(self.scale)) or np.isnan(self.threshold[split]).any():
            raise ValueError("non-finite leaf value, threshold, offset or scale")

    @cached_property
    def _walk(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Arrays for walking, indexed by ``2 * node``: the children of node ``i`` sit at
        ``children[2i]`` and ``children[2i + 1]`` and are stored doubled too, so one step is a
        single gather with no multiply (feature, threshold and leaf are repeated to match). Leaves
        loop to themselves (threshold +inf, so "go left" = stay)."""
        leaf = self.left < 0
        own = np.arange(self.n_nodes, dtype=np.intp)
        children = np.stack([np.where(leaf, own, self.left), np.where(leaf, own, self.right)], 1)
        return (np.repeat(np.where(leaf, 0, self.feature), 2),
                np.repeat(np.where(leaf, np.inf, self.threshold), 2), 2 * children.ravel(),
                np.repeat(leaf, 2))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Evaluate every tree on every row at once: one vectorised step per tree level.

        ``X`` must be float32: sklearn compares float32 features with float64 thresholds, and
        doing the same keeps the results identical to sklearn's.
        """
        n_rows, n_features = X.shape
        # (tree, row) pairs in tree-major order: neighbouring pairs read the same tree's nodes.
        start = np.tile(np.arange(n_rows, dtype=np.intp) * n_features, self.n_trees)
        leaves = self.walk(np.ascontiguousarray(X).ravel(), start, np.repeat(self.roots, n_rows))
        return self.offset + self.scale * leaves.reshape(self.n_trees, n_rows).sum(axis=0)

    def walk(self, flat: np.ndarray, start: np.ndarray, node: np.ndarray) -> np.ndarray:
        """Leaf value reached by each pair: pair ``i`` starts at node ``node[i]`` and reads
        feature ``f`` of its row at ``flat[start[i] + f]``. Pairs go in chunks, so working
        memory stays bounded (~40 bytes a pair) whatever the batch size."""
        # Widened once here rather than at every comparison with the float64 thresholds.
        flat = flat.astype(np.float64)
        return np.concatenate([
            self.value[self._walk_chunk(flat, start[i:i + _PAIRS_PER_CHUNK],
                                        2 * node[i:i + _PAIRS_PER_CHUNK]) >> 1]
            for i in range(0, node.size, _PAIRS_PER_CHUNK)] or [np.empty(0)])

    def _walk_chunk(self, flat: np.ndarray, start: np.ndarray, at: np.ndarray) -> np.ndarray:
        # ``at`` is 2 * node (see _walk). Every pair walks down one level per step. Finished pairs
        # loop on their leaf harmlessly and are dropped only once they are half of those left:
        # dropping costs more than a step.
        feature, threshold, children, leaf = self._walk
        slot = np.arange(at.size)
        reached = np.empty(at.size, dtype=np.intp)
        while at.size:
            for _ in range(_STEPS_PER_CHECK):
                at = children[at + (flat[start + feature[at]] > threshold[at])]
            done = leaf[at]
            n_done = np.count_nonzero(done)
            if 2 * n_done > at.size or n_done == at.size:
                reached[slot[done]] = at[done]
                keep = ~done
                at, start, slot = at[keep], start[keep], slot[keep]
        return reached

    @classmethod
    def concatenate(cls, forests: Sequence[Forest]) -> tuple[Forest, list[int]]:
        """One forest holding all the trees (offset 0, scale 1) and where each input's trees
        start in ``roots``: to walk several forests' pairs in a single pass."""
        shifts = np.cumsum([0] + [f.n_nodes for f in forests[:-1]])

        def shifted(f: Forest, shift: int, a: np.ndarray) -> np.ndarray:
            return np.where(a >= 0, a + shift, a)

        merged = cls(np.concatenate([f.feature for f in forests]),
                     np.concatenate([f.threshold for f in forests]),
                     np.concatenate([shifted(f, s, f.left) for f, s in zip(forests, shifts)]),
                     np.concatenate([shifted(f, s, f.right) for f, s in zip(forests, shifts)]),
                     np.concatenate([f.value for f in forests]),
                     np.concatenate([f.roots + s for f, s in zip(forests, shifts)]))
        return merged, [int(x) for x in np.cumsum([0] + [f.n_trees for f in forests[:-1]])]


def check_int(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    """Raise ConfigError unless ``value`` is an integer >= ``low`` (or None if allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        extra = " or None" if allow_none else ""
        raise ConfigError(f"{name} must be an integer >= {low}{extra}, got {value!r}")


def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}")


def to_matrix(rows: Sequence[Mapping[str, Any]], feature_names: Sequence[str]) -> np.ndarray:
    """Rows of features (dicts, e.g. ``Kernel.features``) as a float64 matrix in column order."""
    try:
        return np.array([[float(row[name]) for name in feature_names] for row in rows],
                        dtype=np.float64).reshape(len(rows), len(feature_names))
    except KeyError as exc:
        raise ConfigError(f"a row has no feature {exc.args[0]!r} "
                          f"(expected {', '.join(feature_names)})") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"a feature value is not a number: {exc}") from None


@dataclass(frozen=True)
class CostBaseline:
    """``latency ≈ intercept + Σ coef·x`` over cost features (FLOPS, BYTES), non-negative
    coefficients, fitted to minimise the relative error. The trees learn the log of the ratio
    to it: a bounded, smooth efficiency factor rather than a latency spanning four decades, which
    lets them interpolate between the few configurations a build can afford to measure."""

    columns: tuple[int, ...]
    coef: tuple[float, ...]
    intercept: float
    floor: float  # keeps the ratio finite for an all-zero row

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, columns: Sequence[int]) -> CostBaseline:
        from scipy.optimize import nnls  # scipy comes with scikit-learn (the train extra)

        A = np.column_stack([X[:, list(columns)], np.ones(len(y))])
        scale = np.maximum(A.max(axis=0), 1e-300)  # unit columns: nnls converges on them
        weights, _ = nnls(A / scale / y[:, None], np.ones(len(y)))
        coef = weights / scale
        return cls(tuple(int(c) for c in columns), tuple(float(c) for c in coef[:-1]),
                   float(coef[-1]), float(1e-3 * y.min()))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.maximum(X[:, list(self.columns)] @ np.asarray(self.coef) + self.intercept,
                          self.floor)

    def validate(self, n_features: int) -> None:
        values = (*self.coef, self.intercept, self.floor)
        if len(self.coef) != len(self.columns) or \
                not all(0 <= c < n_features for c in self.columns):
            raise ValueError("baseline columns do not match the features")
        if not all(np.isfinite(v) and v >= 0 for v in values) or self.floor <= 0:
            raise ValueError("baseline coefficients must be finite and non-negative")


TRANSFORMS = ("ratio", "log", "linear")


class TreeRegressor:
    """Shared behaviour of the tree-ensemble regressors (scikit-learn style).

    ``transform`` says what the trees learn: ``ratio`` (default) the log of latency over a linear
    cost baseline on ``cost_features`` (see :class:`CostBaseline`), ``log`` the log latency,
    ``linear`` the latency itself. Parameters are validated when the object is built, so a bad
    value in a build config fails before any measurement is spent. After ``fit``: ``forest_``
    (the exported trees), ``baseline_`` (None unless ``ratio``), ``feature_names_``,
    ``n_features_in_``, and ``estimator_`` (the scikit-learn model, only in the process that
    trained it).
    """

    algo: ClassVar[str]
    averages_trees: ClassVar[bool]  # prediction is the trees' mean (not their sum)

    def __init__(self, *, transform: str = "ratio",
                 cost_features: Sequence[str] = ("FLOPS", "BYTES"),
                 random_state: int | None = 0):
        if transform not in TRANSFORMS:
            raise ConfigError(f"transform must be one of {', '.join(TRANSFORMS)}, "
                              f"got {transform!r}")
        if isinstance(cost_features, str) or not all(isinstance(f, str) for f in cost_features):
            raise ConfigError(f"cost_features must be a list of feature names, "
                              f"got {cost_features!r}")
        check_int("random_state", random_state, 0, allow_none=True)
        self.transform = transform
        self.cost_features = list(cost_features)
        self.random_state = random_state

    def _sklearn_model(self) -> Any:
        raise NotImplementedError

    def _export(self, model: Any) -> Forest:
        raise NotImplementedError

    def fit(self, X: ArrayLike, y: ArrayLike,
            feature_names: Sequence[str] | None = None) -> TreeRegressor:
        X = _check_X(X)
        y = np.asarray(y, dtype=np.float64).ravel()
        if y.size != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.size} values")
        positive = self.transform != "linear"
        if not np.all(np.isfinite(y)) or (positive and np.any(y <= 0)):
            raise ValueError("targets must be finite" + (" and positive" if positive else ""))
        names = list(feature_names) if feature_names is not None else \
            [f"x{i}" for i in range(X.shape[1])]
        if len(names) != X.shape[1]:
            raise ValueError(f"{len(names)} feature names for {X.shape[1]} columns")
        baseline = None
        if self.transform == "ratio":
            # Matched case-insensitively: kernels spell them FLOPS/BYTES, users often flops.
            wanted = {f.lower() for f in self.cost_features}
            columns = [i for i, name in enumerate(names) if name.lower() in wanted]
            if not columns:
                raise ValueError(f"transform='ratio' needs one of the cost features "
                                 f"{', '.join(self.cost_features)} among the features "
                                 f"({', '.join(names)}); or use transform='log'")
            baseline = CostBaseline.fit(X, y, columns)
        model = self._sklearn_model()
        model.fit(X, self._encode(y, X, baseline))
        self.estimator_ = model
        self.forest_ = self._export(model)
        self.baseline_ = baseline
        self.feature_names_ = names
        self.n_features_in_ = X.shape[1]
        return self

    def _encode(self, y: np.ndarray, X: np.ndarray, baseline: CostBaseline | None) -> np.ndarray:
        if self.transform == "linear":
            return y
        return np.log(y / baseline.predict(X)) if baseline else np.log(y)

    def decode(self, raw: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Latencies from the trees' summed output ``raw`` for rows ``X``."""
        if self.transform == "linear":
            return raw
        return np.exp(raw) * self.baseline_.predict(X) if self.baseline_ else np.exp(raw)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted latencies for a batch of rows (thousands per call is the intended use)."""
        unique, inverse = unique_rows(self.check_features(X))
        return self.decode(self.forest_.predict(unique.astype(np.float32)), unique)[inverse]

    def check_features(self, X: ArrayLike) -> np.ndarray:
        """``X`` as a float64 matrix of this fitted regressor's features, or ValueError."""
        if not hasattr(self, "forest_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet")
        X = _check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the regressor expects "
                             f"{self.n_features_in_} ({', '.join(self.feature_names_)})")
        return X

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predict from feature dicts (e.g. ``Kernel.features``), picking the trained columns."""
        return self.predict(to_matrix(rows, self.feature_names_))

    def first_trees(self, n: int) -> TreeRegressor:
        """A copy with the first ``n`` trees only (itself if it has no more): a random forest's
        first trees are a random forest of their own, boosting's first stages a shorter
        boosting. For a smaller package, at the accuracy of fewer trees."""
        check_int("n", n, 1)
        forest = self.forest_
        if n >= forest.n_trees:
            return self
        end = int(forest.roots[n])
        trimmed = copy.copy(self)
        trimmed.forest_ = Forest(
            forest.feature[:end], forest.threshold[:end], forest.left[:end], forest.right[:end],
            forest.value[:end], forest.roots[:n], forest.offset,
            forest.scale * forest.n_trees / n if self.averages_trees else forest.scale)
        trimmed.n_estimators = n
        trimmed.__dict__.pop("estimator_", None)  # scikit-learn's model keeps every tree
        return trimmed

    # -- serialisation: plain arrays in an .npz, loaded with allow_pickle=False ------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted ensemble as plain arrays. Trees are stored depth first, so a split's left
        child is the node after it: only right children are kept, thresholds for splits and
        values for leaves only (``feature`` -1 marks a leaf). A right child is kept as its
        distance from its parent, which is small and repeats, so it zips to a third of a node
        index; integers take the narrowest type that holds them."""
        forest = self.forest_
        split = forest.left >= 0
        nodes = np.flatnonzero(split)
        if np.any(forest.left[split] != nodes + 1):
            raise ValueError("trees not stored depth first: a left child does not follow its "
                             "parent")
        meta = {"format": FORMAT, "algo": self.algo, "params": self.get_params(),
                "offset": forest.offset, "scale": forest.scale,
                "baseline": asdict(self.baseline_) if self.baseline_ else None}
        return {
            "meta": np.array(json.dumps(meta)),
            "feature_names": np.array(self.feature_names_, dtype=str),
            "feature": _narrowest(forest.feature, (np.int8, np.int16, np.int32)),
            "right_offset": _narrowest(forest.right[split] - nodes, (np.uint16, np.uint32)),
            "threshold": float32_floor(forest.threshold[split]),
            "value": self._stored_leaves(~split),
            "roots": forest.roots.astype(np.int32),
        }

    def _stored_leaves(self, leaf: np.ndarray) -> np.ndarray:
        """Leaf values in the narrowest float that keeps predictions: float16 where the trees
        learn a log of latency and no prediction can move by more than HALF_LEAF_TOLERANCE
        (leaves are most of a compressed package), else float32 (1e-7 relative)."""
        forest, value = self.forest_, self.forest_.value[leaf]
        if self.transform != "linear":
            with np.errstate(over="ignore"):  # beyond float16's range: inf, refused below
                half = value.astype(np.float16)
            worst = np.zeros(forest.n_trees)
            np.maximum.at(worst, forest.node_trees(np.flatnonzero(leaf)),
                          np.abs(half.astype(np.float64) - value))
            if np.isfinite(half).all() and abs(forest.scale) * worst.sum() <= HALF_LEAF_TOLERANCE:
                return half
        return value.astype(np.float32)

    def save(self, target: str | Path | BinaryIO) -> None:
        """Write the .npz to a path or a binary file object, its arrays uncompressed: a zipped
        package compresses them with LZMA, which packs raw arrays 12 % tighter than the .npz's
        own deflate (the shipped forests, 2026-12-04)."""
        if isinstance(target, (str, Path)):
            # Through a file object: given a path, numpy would append ".npz" to other suffixes.
            with open(target, "wb") as f:
                np.savez(f, **self.to_arrays())
        else:
            np.savez(target, **self.to_arrays())

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> TreeRegressor:
        """Rebuild a fitted regressor from :meth:`to_arrays` output; ValueError if malformed."""
        if "meta" not in arrays:
            raise ValueError("missing arrays: meta")
        if arrays["meta"].dtype.kind != "U":
            raise ValueError("'meta' is not a text array")
        meta = json.loads(str(arrays["meta"][()]))
        if not isinstance(meta, dict) or meta.get("format") not in _CHILD_ARRAYS:
            raise ValueError(f"not an {FORMAT} file")
        missing = {"feature_names", "feature", "threshold", "value", "roots",
                   *_CHILD_ARRAYS[meta["format"]]} - set(arrays)
        if missing:
            raise ValueError(f"missing arrays: {', '.join(sorted(missing))}")
        if arrays["feature_names"].dtype.kind != "U":
            raise ValueError("'feature_names' is not a text array")
        algo_cls = ALGORITHMS.get(meta.get("algo"))
        if algo_cls is None:
            raise ValueError(f"unknown algorithm {meta.get('algo')!r}")
        try:
            regressor = algo_cls(**meta["params"])
        except (TypeError, ConfigError) as exc:
            raise ValueError(f"bad parameters: {exc}") from None

        def ints(key: str) -> np.ndarray:
            if arrays[key].dtype.kind not in "iu":
                raise ValueError(f"'{key}' is not an integer array")
            return arrays[key].astype(np.intp)

        def floats(key: str) -> np.ndarray:
            if arrays[key].dtype.kind != "f":
                raise ValueError(f"'{key}' is not a float array")
            return arrays[key].astype(np.float64)

        if meta["format"] == _FORMAT_1:
            nodes = (ints("feature"), floats("threshold"), ints("left"), ints("right"),
                     floats("value"))
        elif meta["format"] == _FORMAT_2:
            nodes = _every_node(ints("feature"), floats("threshold"), ints("right"),
                                floats("value"))
        else:
            nodes = _every_node(ints("feature"), floats("threshold"), ints("right_offset"),
                                floats("value"), right_is_offset=True)
        forest = Forest(*nodes, ints("roots"), float(meta["offset"]), float(meta["scale"]))
        names = [str(n) for n in arrays["feature_names"].ravel()]
        forest.validate(len(names))
        baseline = None
        if regressor.transform == "ratio":
            try:
                fit = meta["baseline"]
                baseline = CostBaseline(tuple(int(c) for c in fit["columns"]),
                                        tuple(float(c) for c in fit["coef"]),
                                        float(fit["intercept"]), float(fit["floor"]))
            except (TypeError, KeyError, ValueError):
                raise ValueError("transform 'ratio' without a valid baseline") from None
            baseline.validate(len(names))
        regressor.forest_, regressor.baseline_ = forest, baseline
        regressor.feature_names_, regressor.n_features_in_ = names, len(names)
        return regressor

    @classmethod
    def load(cls, path: str | Path) -> TreeRegressor:
        """Load a regressor file; a malformed or unsafe file raises ModelError."""
        return load_regressor(path)

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (fitted attributes end in ``_`` and are left out)."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class ForestRegressor(TreeRegressor):
    """Random forest (scikit-learn ``RandomForestRegressor``); the default kernel regressor.

    ``min_samples_leaf=3`` by default: on latency-shaped data it is as accurate as 1 and makes a
    third of the nodes (smaller packages, shallower trees to walk).
    """

    algo = "rf"
    averages_trees = True

    def __init__(self, n_estimators: int = 100, *, max_depth: int | None = None,
                 min_samples_leaf: int = 3, max_features: float = 1.0, transform: str = "ratio",
                 cost_features: Sequence[str] = ("FLOPS", "BYTES"),
                 random_state: int | None = 0):
        super().__init__(transform=transform, cost_features=cost_features,
                         random_state=random_state)
        check_int("n_estimators", n_estimators, 1)
        check_int("max_depth", max_depth, 1, allow_none=True)
        check_int("min_samples_leaf", min_samples_leaf, 1)
        _check_fraction("max_features", max_features)
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features

    def _sklearn_model(self) -> Any:
        ensemble = import_extra("sklearn.ensemble", "scikit-learn", "train")
        return ensemble.RandomForestRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
            random_state=self.random_state)

    def _export(self, model: Any) -> Forest:
        return Forest.from_sklearn(model.estimators_, offset=0.0,
                                   scale=1.0 / len(model.estimators_))


class BoostingRegressor(TreeRegressor):
    """Gradient boosting (scikit-learn ``GradientBoostingRegressor``, squared error)."""

    algo = "gb"
    averages_trees = False

    def __init__(self, n_estimators: int = 300, *, learning_rate: float = 0.1,
                 max_depth: int = 4, min_samples_leaf: int = 1, subsample: float = 1.0,
                 transform: str = "ratio", cost_features: Sequence[str] = ("FLOPS", "BYTES"),
                 random_state: int | None = 0):
        super().__init__(transform=transform, cost_features=cost_features,
                         random_state=random_state)
        check_int("n_estimators", n_estimators, 1)
        check_int("max_depth", max_depth, 1)
        check_int("min_samples_leaf", min_samples_leaf, 1)
        _check_fraction("learning_rate", learning_rate)
        _check_fraction("subsample", subsample)
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.subsample = subsample

    def _sklearn_model(self) -> Any:
        ensemble = import_extra("sklearn.ensemble", "scikit-learn", "train")
        return ensemble.GradientBoostingRegressor(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate,
            max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
            subsample=self.subsample, random_state=self.random_state)

    def _export(self, model: Any) -> Forest:
        # The initial estimate is the training mean (a DummyRegressor); stages add lr * tree.
        offset = float(np.asarray(model.init_.constant_).ravel()[0])
        return Forest.from_sklearn(model.estimators_[:, 0], offset=offset,
                                   scale=model.learning_rate)


ALGORITHMS: dict[str, type[TreeRegressor]] = {"rf": ForestRegressor, "gb": BoostingRegressor}


def make_regressor(algo: str = "rf", **params: Any) -> TreeRegressor:
    """A regressor by short name: ``rf`` (random forest, default) or ``gb`` (gradient boosting)."""
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown regressor algorithm '{algo}' (choose from "
                          f"{', '.join(ALGORITHMS)})")
    try:
        return ALGORITHMS[algo](**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameter for '{algo}' regressor: {exc}") from None


def load_regressor(source: str | Path | BinaryIO, label: str | None = None) -> TreeRegressor:
    """Load an .npz written by :meth:`TreeRegressor.save` (a path or a binary file object).

    ``allow_pickle=False``: an object array or a pickle inside is refused, never run. Any
    problem raises ModelError naming ``label`` (default: the path).
    """
    label = label or str(source)
    try:
        arrays = np.load(source, allow_pickle=False)
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with arrays:
            size = sum(info.file_size for info in arrays.zip.infolist())
            if size > _MAX_ARRAY_BYTES:  # a compressed bomb is not a forest
                raise ValueError(f"arrays would take {size} bytes")
            return TreeRegressor.from_arrays({key: arrays[key] for key in arrays.files})
    except Exception as exc:  # noqa: BLE001 - any failure to parse a data file is the file's fault
        raise ModelError(" ".join(f"{label}: not a valid regressor file ({exc})".split())) \
            from None


def unique_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray | slice]:
    """Distinct rows and how to expand results back (``values[inverse]``). NAS batches repeat
    kernel configurations heavily: each is predicted once. Small batches are left alone."""
    if X.shape[0] < _DEDUP_MIN_ROWS:
        return X, slice(None)
    unique, inverse = np.unique(X, axis=0, return_inverse=True)
    return unique, inverse.ravel()


def _check_X(X: ArrayLike) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array of rows, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values")
    return X


def _narrowest(values: np.ndarray, dtypes: Sequence[type]) -> np.ndarray:
    """``values`` in the first integer type of ``dtypes`` that holds them all (the last one
    otherwise): zip packs narrow integers tighter than wide ones with zero bytes."""
    for dtype in dtypes:
        info = np.iinfo(dtype)
        if values.size == 0 or (values.min() >= info.min and values.max() <= info.max):
            break
    return values.astype(dtype)


def _every_node(feature: np.ndarray, threshold: np.ndarray, right: np.ndarray,
                value: np.ndarray, right_is_offset: bool = False) -> tuple[np.ndarray, ...]:
    """Per-node arrays (feature, threshold, left, right, value) from the stored ones: per node
    ``feature``, per split ``threshold`` and ``right`` (a node index, or the distance from
    the split with ``right_is_offset``), per leaf ``value``; the left child of a split is the
    next node."""
    split = feature >= 0
    n_splits = int(np.count_nonzero(split))
    if feature.ndim != 1 or (right.shape, threshold.shape, value.shape) != (
            (n_splits,), (n_splits,), (feature.size - n_splits,)):
        raise ValueError("split and leaf arrays do not match the nodes")
    nodes = np.arange(feature.size)
    left = np.where(split, nodes + 1, -1)
    every_right = np.full(feature.size, -1, dtype=np.intp)
    every_right[split] = right + nodes[split] if right_is_offset else right
    every_threshold = np.zeros(feature.size)
    every_threshold[split] = threshold
    every_value = np.zeros(feature.size)
    every_value[~split] = value
    return feature, every_threshold, left, every_right, every_value


def float32_floor(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 at or below each threshold. Features reach the trees as float32, and
    for every float32 ``x``, ``x <= t`` holds exactly when ``x <= floor32(t)``: the stored
    forest decides as the trained one does, in half the bytes."""
    down = threshold.astype(np.float32)
    above = down.astype(np.float64) > threshold
    down[above] = np.nextafter(down[above], np.float32(-np.inf))
    return down
