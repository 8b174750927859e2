"""The serving model's boosters compiled to native code (lleaves: LightGBM's model text through LLVM), for the bulk
scoring of offer states: the choice booster's 1,800 trees predict 5-8x faster than LightGBM's own predict, to
the same numbers (float64 throughout; tests/recommendations/test_ranker_compiled.py compares them).

Compiling takes time (about 25 s for the demo's choice booster on this machine, without inlining: inlining made the
code ~25% faster and the compile 6x longer), so it happens once per model and machine, when the model is trained
(`tierwise train-ranker`, the scheduled retrain: app/recommendations/learned/registry.retrain): the object code is
cached on disk under a key of the model text's digest, the compiler's versions and the host CPU, and the refresh
of offer states loads it from there (a fraction of a second). A refresh that finds none (a version trained
elsewhere, or rolled back to on a machine that never compiled it) scores with LightGBM, the same numbers; so does
one where lleaves or LLVM is not available, or compiling failed. A refresh never compiles: one refresh predicts
with one predictor throughout.

The reasons' leaves are compiled the same way (`leaf_model_text`: the choice booster's first rounds, each tree a
class of its own whose leaves' values are their indices: LightGBM's `pred_leaf`, several times faster); compiled
beside the boosters when a model is trained, or LightGBM's `pred_leaf` where there is none.
"""

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

Predict = Callable[[np.ndarray, int], np.ndarray]
"""(matrix, threads) -> what the booster's `predict` gives (probabilities; rows x classes for a multiclass one)."""

DIRECTORY = "ranker-compiled"
"""Under the data directory (TIERWISE_DATA_DIR): the compiled boosters, one file per booster and machine."""

_lock = threading.Lock()
_ready: dict[str, Predict] = {}
"""This process' compiled predictors by key (the serving model's two boosters, and the next model's)."""
_READY_AT_MOST = 4


def _toolchain() -> tuple[str, str] | None:
    """lleaves' and llvmlite's versions and the host CPU's name and features (what the object code is for); None
    when the compiler cannot be used here."""
    try:
        import llvmlite
        import llvmlite.binding as llvm

        if not hasattr(llvm, "PassManagerBuilder"):  # lleaves 1.x needs LLVM's legacy pass manager (llvmlite < 0.45)
            return None
        host = f"{llvm.get_host_cpu_name()}:{llvm.get_host_cpu_features().flatten()}"
        return f"lleaves {metadata.version('lleaves')} llvmlite {llvmlite.__version__}", host
    except Exception:  # noqa: BLE001 - no compiler: LightGBM predicts
        return None


def cache_dir(settings) -> Path:
    return Path(settings.data_dir) / DIRECTORY


def cache_key(model_text: str, raw_score: bool = False) -> str | None:
    toolchain = _toolchain()
    if toolchain is None:
        return None
    parts = [*toolchain, *(["raw_score"] if raw_score else []), model_text]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _compile(model_text: str, target: Path | None, raw_score: bool = False) -> Predict:
    """Compile the model text, or load it from `target` where it was cached: a file of the object code after its
    SHA-256 (LLVM aborts the process on a damaged object file, so one whose digest does not match is dropped and
    the model compiled again). With `target`, newly compiled code is cached there (atomically: written to a
    temporary file first; a directory that cannot be written leaves it compiled for this process only)."""
    import lleaves

    with tempfile.TemporaryDirectory(prefix="tierwise-ranker-") as scratch:
        text_file, object_file = Path(scratch) / "model.txt", Path(scratch) / "model.o"
        text_file.write_text(model_text)
        cached = _read_cached(target)
        if cached is not None:
            object_file.write_bytes(cached)
        model = lleaves.Model(model_file=str(text_file))
        model.compile(cache=str(object_file), finline=False, raw_score=raw_score)
        if cached is None and target is not None:
            code = object_file.read_bytes()
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                staged = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                staged.write_bytes(hashlib.sha256(code).digest() + code)
                os.replace(staged, target)
            except OSError:
                log.warning("ranker: the compiled model could not be cached in %s", target.parent)

    def predict(matrix: np.ndarray, threads: int) -> np.ndarray:
        return model.predict(np.ascontiguousarray(matrix, dtype=np.float64), n_jobs=threads or os.cpu_count() or 1)

    return predict


def _read_cached(target: Path | None) -> bytes | None:
    """The object code cached at `target`, if there is some and its digest matches (else the file is dropped)."""
    if target is None:
        return None
    try:
        data = target.read_bytes()
    except OSError:
        return None
    digest, code = data[:32], data[32:]
    if hashlib.sha256(code).digest() != digest:
        log.warning("ranker: a damaged compiled model was dropped (%s)", target.name)
        target.unlink(missing_ok=True)
        return None
    return code


def predictor(
    model_text: str, cache_dir: Path | None, *, compile_missing: bool = False, raw_score: bool = False
) -> Predict | None:
    """The compiled predictor of a booster's model text: this process' own, else loaded from `cache_dir` where it
    was compiled before, else (`compile_missing`) compiled now and cached there. None where there is none (not
    compiled on this machine yet, no lleaves or LLVM, a failed compile: logged): LightGBM predicts. `raw_score`:
    the trees' sums, without the objective's transformation (LightGBM's `predict(raw_score=True)`)."""
    key = cache_key(model_text, raw_score)
    if key is None:
        return None
    if key in _ready:
        return _ready[key]
    target = cache_dir / f"{key}.o" if cache_dir is not None else None
    if not compile_missing and (target is None or _read_cached(target) is None):
        return None
    try:
        return _keep(key, _compile(model_text, target, raw_score))
    except Exception:  # noqa: BLE001 - LightGBM predicts instead
        log.exception("ranker: the model %s could not be compiled; LightGBM predicts", key)
        return None


def leaf_model_text(model_text: str) -> str:
    """A booster's model text (LightGBM's) made a model whose raw prediction is the leaf each tree reaches, as
    LightGBM's `predict(pred_leaf=True)` gives it: every tree a class of its own (one round), its leaves' values
    their indices. The same trees, so the same decisions (missing values and categories included); the indices
    are small integers, exact in float64."""
    lines = model_text.split("\n")
    trees, leaves, header, out = sum(line.startswith("Tree=") for line in lines), 0, True, []
    for line in lines:
        header = header and not line.startswith("Tree=")
        if header and line.startswith(("num_class=", "num_tree_per_iteration=")):
            line = f"{line.split('=', 1)[0]}={trees}"
        elif not header and line.startswith("num_leaves="):
            leaves = int(line.split("=", 1)[1])
        elif not header and line.startswith("leaf_value="):
            line = "leaf_value=" + " ".join(map(str, range(leaves)))
        out.append(line)
    return "\n".join(out)


def _keep(key: str, predict: Predict) -> Predict:
    with _lock:
        while len(_ready) >= _READY_AT_MOST:
            _ready.pop(next(iter(_ready)))
        _ready[key] = predict
    return predict
