"""Submissions to the course-style fixture assignments, written as code and saved as notebooks.

Each is a few cells of plain numpy, in the return convention or signature it is named for.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LAB = FIXTURES / "sigmoid-4-5-1-lab"
PLANAR = FIXTURES / "planar-classifier"
TWO_LAYER = FIXTURES / "two-layer-net-class"
BIKES = FIXTURES / "bike-sharing-class"

SIGMOID = "import numpy as np\n\ndef sigmoid(t):\n    return 1.0 / (1.0 + np.exp(-t))\n"

FORWARD = """
def simple_feed_forward(x, w1, w2):
    z1 = w1.T @ x
    x1 = sigmoid(z1)
    z2 = w2.T @ x1
    y_hat = {output}
    return {returns}
"""

BACKPROP = """
def simple_backpropagation(y, x, w1, w2):
    x1 = sigmoid(w1.T @ x)
    y_hat = sigmoid(w2.T @ x1)
    delta2 = ({error}) * y_hat * (1 - y_hat)
    delta1 = (w2 @ delta2) * x1 * (1 - x1)
    return {{"w_1": np.outer(x, delta1), "w_2": np.outer(x1, delta2)}}
"""

# what simple_feed_forward returns, as real submissions write it
LAB_CONVENTIONS = {
    "alone": "y_hat",
    "first": "y_hat, z2, x1, z1",
    "last": "z1, x1, z2, y_hat",
    "three": "z1, z2, y_hat",
}


def lab_source(returns: str, output: str = "sigmoid(z2)", error: str = "y_hat - y") -> list[str]:
    """A lab submission: its forward pass returning `returns`, its backward pass with `error`."""
    return [SIGMOID, FORWARD.format(output=output, returns=returns), BACKPROP.format(error=error)]


PLANAR_FORWARD = """
def forward_propagation(X, parameters):
    W1, b1, W2, b2 = parameters["W1"], parameters["b1"], parameters["W2"], parameters["b2"]
    Z1 = np.dot(W1, X) + b1
    A1 = np.tanh(Z1)
    Z2 = np.dot(W2, A1) + b2
    A2 = sigmoid(Z2)
    cache = {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}
    return A2, cache
"""

PLANAR_COST = """
def compute_cost({signature}):
    m = Y.shape[1]
    logprobs = np.multiply(np.log(A2), Y) + np.multiply(np.log(1 - A2), 1 - Y)
    cost = {sign}np.sum(logprobs) / m
    return float(np.squeeze(cost))
"""


def planar_source(signature: str = "A2, Y", sign: str = "- ") -> list[str]:
    """A planar-classifier submission with compute_cost taking `signature`."""
    return [SIGMOID, PLANAR_FORWARD, PLANAR_COST.format(signature=signature, sign=sign)]


TWO_LAYER_NET = """
import numpy as np

class TwoLayerNet(object):
    def __init__(self, input_size, hidden_size, output_size, std=1e-4):
        self.{attribute} = {{}}
        self.{attribute}['W1'] = std * np.random.randn(input_size, hidden_size)
        self.{attribute}['b1'] = np.zeros(hidden_size)
        self.{attribute}['W2'] = std * np.random.randn(hidden_size, output_size)
        self.{attribute}['b2'] = np.zeros(output_size)

    def loss(self, X, y=None, reg=0.0):
        W1, b1 = self.{attribute}['W1'], self.{attribute}['b1']
        W2, b2 = self.{attribute}['W2'], self.{attribute}['b2']
        N, D = X.shape
        h = np.maximum(0, X.dot(W1) + b1)
        scores = h.dot(W2) + b2
        if y is None:
            return scores
        shifted = scores - scores.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        loss = -np.log(probs[np.arange(N), y]).sum() / N + reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        dscores = probs.copy()
        dscores[np.arange(N), y] -= 1
        dscores /= N
        grads = {{}}
        grads['W2'] = h.T.dot(dscores) + {factor} * reg * W2
        grads['b2'] = dscores.sum(axis=0)
        dh = dscores.dot(W2.T)
        dh[h <= 0] = 0
        grads['W1'] = X.T.dot(dh) + {factor} * reg * W1
        grads['b1'] = dh.sum(axis=0)
        return loss, grads
"""


def two_layer_source(attribute: str = "params", factor: str = "2") -> list[str]:
    """A CS231n-style TwoLayerNet keeping its weights in `attribute`, with `factor` * reg * W in its gradients."""
    return [TWO_LAYER_NET.format(attribute=attribute, factor=factor)]


NEURAL_NETWORK = """
import numpy as np

class NeuralNetwork(object):
    def __init__(self, input_nodes, hidden_nodes, output_nodes, learning_rate):
        self.input_nodes = input_nodes
        self.hidden_nodes = hidden_nodes
        self.output_nodes = output_nodes
        self.weights_input_to_hidden = np.random.normal(0.0, self.input_nodes**-0.5,
                                                        (self.input_nodes, self.hidden_nodes))
        self.weights_hidden_to_output = np.random.normal(0.0, self.hidden_nodes**-0.5,
                                                         (self.hidden_nodes, self.output_nodes))
        self.lr = learning_rate
        self.activation_function = lambda x: 1 / (1 + np.exp(-x))

    def train(self, features, targets):
        n_records = features.shape[0]
        delta_weights_i_h = np.zeros(self.weights_input_to_hidden.shape)
        delta_weights_h_o = np.zeros(self.weights_hidden_to_output.shape)
        for X, y in zip(features, targets):
            hidden_outputs = self.activation_function(np.dot(X, self.weights_input_to_hidden))
            final_outputs = np.dot(hidden_outputs, self.weights_hidden_to_output)
            output_error_term = y - final_outputs
            hidden_error = np.dot(self.weights_hidden_to_output, output_error_term)
            hidden_error_term = hidden_error * hidden_outputs * (1 - hidden_outputs)
            delta_weights_i_h += hidden_error_term * X[:, None]
            delta_weights_h_o += output_error_term * hidden_outputs[:, None]
        self.weights_hidden_to_output {step} self.lr * delta_weights_h_o / n_records
        self.weights_input_to_hidden {step} self.lr * delta_weights_i_h / n_records

    def run(self, features):
        hidden_outputs = self.activation_function(np.dot(features, self.weights_input_to_hidden))
        return np.dot(hidden_outputs, self.weights_hidden_to_output)
"""


def bikes_source(step: str = "+=") -> list[str]:
    """A Udacity-style NeuralNetwork whose train step updates its weights with `step`."""
    return [NEURAL_NETWORK.format(step=step)]


def write_notebook(folder: Path, name: str, cells: list[str]) -> Path:
    """Save code cells as `folder/name.ipynb`."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.strip("\n")) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path
