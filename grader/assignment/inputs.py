"""Inputs the grader chooses: the notebook's given sample, or fresh random draws."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from grader.assignment.tables import Distribution, InputSet

Inputs = dict[str, Any]


def rng_for(seed: int, *labels: str) -> np.random.Generator:
    """A generator that depends only on the run seed and stable labels (a check id, a purpose)."""
    words = [seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF]
    for label in labels:
        digest = hashlib.sha256(label.encode()).digest()
        words.append(int.from_bytes(digest[:4], "little"))
    return np.random.default_rng(words)


def as_input(value: Any) -> Any:
    """Spec or generator values: arrays become float64 arrays (copied; a generator's integer
    arrays stay int64), dicts keep their keys, scalars stay Python numbers."""
    if isinstance(value, dict):
        return {str(k): as_input(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.integer):
        return np.array(value, dtype=np.int64)  # class labels a notebook indexes with (scores[i, y])
    if isinstance(value, (list, tuple)) and _holds_dict(value):  # a network as layers of neurons
        return [as_input(v) for v in value]
    if isinstance(value, (list, tuple, np.ndarray)):
        return np.array(value, dtype=np.float64)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _holds_dict(value: Any) -> bool:
    """Whether a list holds a dict at some depth (so it is a structure, not an array)."""
    return any(isinstance(v, dict) or (isinstance(v, (list, tuple)) and _holds_dict(v)) for v in value)


def sample(dist: Distribution, rng: np.random.Generator, trial: int) -> np.ndarray:
    """Draw one random input of the declared shape."""
    shape = dist.shape_for(trial)
    if dist.dist == "uniform":
        return rng.uniform(dist.low, dist.high, size=shape)
    if dist.dist == "normal":
        return rng.normal(dist.mean, dist.scale, size=shape)
    if dist.dist == "integers":
        return rng.integers(int(dist.low), int(dist.high), size=shape, endpoint=True).astype(
            np.float64
        )
    if dist.dist == "choice":
        return rng.choice(np.asarray(dist.values, dtype=np.float64), size=shape)
    if dist.dist == "onehot":
        classes, count = shape
        out = np.zeros((classes, count))
        out[rng.integers(0, classes, size=count), np.arange(count)] = 1.0
        return out
    raise AssertionError(dist.dist)


def draw(
    inputs: InputSet,
    rng: np.random.Generator,
    trial: int,
    generator: Callable[..., dict[str, Any]] | None = None,
) -> Inputs:
    """Materialise one input set for one trial; literal values are copied, never shared."""
    out: Inputs = {}
    if generator is not None:
        produced = generator(rng, trial)
        out.update({str(k): as_input(v) for k, v in produced.items()})
    for name, spec in inputs.variables.items():
        out[name] = sample(spec, rng, trial) if isinstance(spec, Distribution) else as_input(spec)
    return out
