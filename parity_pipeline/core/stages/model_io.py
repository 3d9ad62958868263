"""Model artifacts: where they live, how they are written, hashed and reloaded (no pickles).

Formats (``TrainedModel.model_format``):

- ``lightgbm_text``: LightGBM's native model text, ``Booster.model_to_string(num_iteration=
  best_iteration)``, so the file holds exactly the trees used for prediction. Hash:
  ``hashing.lightgbm_model_sha256`` (config-echo lines such as ``[num_threads: 1]`` dropped).
  Missing feature values are handled by LightGBM itself, so the file is self-contained.
- ``sklearn_linear_v1``: canonical JSON (``hashing.canonical_json``) of::

      {"format": "sklearn_linear_v1", "task": "regression" | "binary",
       "estimator": "Ridge" | "LogisticRegression", "features": [...],
       "fill_values": [...],   # training-window medians that replace NaN, per feature
       "scaler_mean": [...], "scaler_scale": [...],   # StandardScaler fitted on training rows
       "coef": [...], "intercept": float, "classes": [0.0, 1.0] | null, "params": {...}}

  Prediction: ``z = ((x with NaN -> fill) - mean) / scale``; ``coef · z + intercept``; binary
  returns ``P(class 1) = expit(...)``, matching scikit-learn's ``predict_proba[:, 1]``. Floats
  are stored by ``repr`` so reloading is exact. Hash: SHA-256 of the file's text.

Files are stored as objects of the content store (``core.store.content``), named by
``model_sha256``.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit

from parity_pipeline.constants import LIGHTGBM_NUM_THREADS
from parity_pipeline.core.errors import ArtifactIntegrityError, ParityInputError
from parity_pipeline.core.hashing import canonical_json, lightgbm_model_sha256, sha256_text

LIGHTGBM_FORMAT = "lightgbm_text"
LINEAR_FORMAT = "sklearn_linear_v1"
FORMAT_SUFFIX = {LIGHTGBM_FORMAT: "txt", LINEAR_FORMAT: "json"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def dense_predictions(predicted: object) -> np.ndarray:
    """LightGBM's predictions of a dense matrix: an array (its signature also allows the sparse
    matrices ``pred_contrib`` gives for sparse input, which nothing here asks for)."""
    if not isinstance(predicted, np.ndarray):
        raise TypeError(f"LightGBM predictions: expected an array, got {type(predicted).__name__}")
    return predicted


def predict(booster: lgb.Booster, values: np.ndarray) -> np.ndarray:
    """``booster``'s predictions on ``LIGHTGBM_NUM_THREADS`` threads. A booster loaded from
    model text (what ``lgb.train`` returns) has forgotten its training parameters, and would
    predict on a thread per core: two steps running side by side then ran four threads on two
    cores (same numbers, each row is predicted alone, but slower)."""
    return dense_predictions(booster.predict(values, num_threads=LIGHTGBM_NUM_THREADS))


@dataclass(frozen=True)
class LightGBMModel:
    booster: lgb.Booster

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.booster.feature_name())

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw regression value, or P(y = 1) for a binary objective."""
        return predict(self.booster, frame[list(self.features)].to_numpy(dtype=np.float64))


@dataclass(frozen=True)
class LinearModel:
    spec: dict  # the sklearn_linear_v1 content

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.spec["features"])

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        values = frame[list(self.features)].to_numpy(dtype=np.float64)
        filled = np.where(np.isnan(values), np.asarray(self.spec["fill_values"]), values)
        scaled = (filled - np.asarray(self.spec["scaler_mean"])) / np.asarray(
            self.spec["scaler_scale"])
        decision = scaled @ np.asarray(self.spec["coef"]) + float(self.spec["intercept"])
        return expit(decision) if self.spec["task"] == "binary" else decision


def safe_name(name: str) -> str:
    """A path component from a target/symbol name: [A-Za-z0-9._-] kept, the rest -> '_'."""
    cleaned = _UNSAFE.sub("_", str(name))
    return f"_{cleaned}" if cleaned in ("", ".", "..") else cleaned


def unit_dir(target: str, view: str, symbol: str | None) -> str:
    """``<target>/<view>/<symbol or ALL>`` (relative, POSIX); CROSS_SECTIONAL uses ``ALL``."""
    return "/".join([safe_name(target), safe_name(view),
                     "ALL" if symbol is None else safe_name(symbol)])


def model_sha256(text: str, model_format: str) -> str:
    if model_format == LIGHTGBM_FORMAT:
        return lightgbm_model_sha256(text)
    if model_format == LINEAR_FORMAT:
        return sha256_text(text)
    raise ParityInputError(f"unknown model format {model_format!r}; use one of "
                           f"{sorted(FORMAT_SUFFIX)}")


def linear_text(spec: dict) -> str:
    return canonical_json({"format": LINEAR_FORMAT, **spec})


def load_model(path: Path | str, model_format: str,
               expected_sha256: str | None = None) -> LightGBMModel | LinearModel:
    """Reload a saved model; with ``expected_sha256`` the file must match the recorded hash."""
    text = Path(path).read_text(encoding="utf-8")
    if expected_sha256 is not None and model_sha256(text, model_format) != expected_sha256:
        raise ArtifactIntegrityError(f"model {path} does not match its recorded sha256 "
                                     f"{expected_sha256}; retrain or restore the artifact")
    if model_format == LIGHTGBM_FORMAT:
        return LightGBMModel(lgb.Booster(model_str=text))
    if model_format != LINEAR_FORMAT:
        raise ParityInputError(f"unknown model format {model_format!r} for {path}")
    spec = json.loads(text)
    if spec.get("format") != LINEAR_FORMAT:
        raise ArtifactIntegrityError(f"{path} is not a {LINEAR_FORMAT} file "
                                     f"(format={spec.get('format')!r})")
    return LinearModel(spec)
