"""A behaviour check can require that training returns the network, and scores it with the reference.

A `train` that ignores the network (nearest class means, centres kept on the side) still
lets its own `predict` classify well; the tanh-softmax assignment declares `returns` and
`predict_with`, so such a submission earns nothing for training.
"""

from __future__ import annotations

import shutil

import pytest

from grader.assignment.load import load_spec
from grader.errors import SpecError
from tests.conftest import ASSIGNMENTS, graded

from .helpers import ADVERSARIAL

ID = "tanh-softmax-gaussians"


@pytest.mark.parametrize("name, why", [
    ("train_class_means", "must return the network's parameters"),
    ("train_stashes_means", "must predict with the trained network"),
    ("train_global_centres", "must predict with the trained network"),
])
def test_training_that_ignores_the_network_earns_nothing(name, why):
    r = graded(ADVERSARIAL / f"{name}.ipynb", ID, seed=11)
    train = next(c for c in r.checks if c.target == "train")
    assert train.status == "fail" and train.points == 0
    assert why in " ".join(train.message.split())
    # the rest of the notebook is right (predict, which does not use the network, is checked on its own)
    others = [c for c in r.checks if c.target not in ("train", "predict")]
    assert others and all(c.status == "pass" for c in others)
    assert r.score <= r.max_score - train.max_points


def test_the_solution_trains_a_network_that_passes_both_ways():
    r = graded(ASSIGNMENTS / ID / "solution.ipynb", ID, seed=11)
    train = next(c for c in r.checks if c.target == "train")
    assert train.status == "pass"


@pytest.mark.parametrize("edit, field", [
    ('predict_with = "predict"\n', "returns"),
    ("returns = { W1 = [2, 2], b1 = [2, 1], W2 = [2, 2], b2 = [2, 1] }\n", "predict_with"),
])
def test_returns_and_predict_with_go_together(tmp_path, edit, field):
    folder = tmp_path / ID
    shutil.copytree(ASSIGNMENTS / ID, folder)
    spec = folder / "assignment.toml"
    spec.write_text(spec.read_text().replace(edit, ""))
    with pytest.raises(SpecError, match="`returns` and `predict_with` go together"):
        load_spec(folder)
