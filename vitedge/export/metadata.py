"""The metadata dict every exported artifact carries (schema in vitedge/artifact.py)."""

from __future__ import annotations

import datetime as _dt

from .. import __version__
from ..artifact import SCHEMA
from ..calibration import CalibrationSet
from ..modelfile import ModelSpec

STATIC_PRECISIONS = ("int8", "int16x8")  # precisions whose ranges come from the calibration images


def artifact_metadata(*, model_format: str, precision: str, recipe: dict, spec: ModelSpec, io: dict,
                      source: dict, calibration: CalibrationSet, verification: dict | None = None,
                      scores: str = "logits") -> dict:
    """Schema-1 metadata; `verification` is filled in once the artifact has been run.
    `scores`: "probabilities" when a softmax ends the model (export --scores)."""
    config = spec.config
    inp = io["input"]
    return {
        "schema": SCHEMA,
        "format": "vitedge-artifact",
        "vitedge_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "model_format": model_format,
        "precision": precision,
        "recipe": recipe,
        "labels": list(spec.labels),
        "input": {
            "name": inp["name"],
            "shape": list(inp.get("shape") or [None, *config.image_size, config.channels]),
            "layout": "NHWC",
            "dtype": inp.get("dtype", "float32"),
        },
        "output": {"name": io["output"]["name"], "scores": scores,
                   "dtype": io["output"].get("dtype", "float32")},
        "preprocessing": spec.preprocessing.to_dict(),
        "source": {**source, "variant": config.variant, "config": config.to_dict()},
        "calibration": calibration.to_metadata() if precision in STATIC_PRECISIONS else None,
        "verification": verification,
    }
