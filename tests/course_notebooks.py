"""Submissions to the course-style fixture assignments, written as code and saved as notebooks.

Each is a few cells of plain numpy, in the return convention or signature it is named for.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np

from grader.report import Report

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


def grade_cells(folder: Path, assignment: Path, name: str, cells: list[str]) -> Report:
    """Grade code cells saved as `folder/name.ipynb` (cached, as `graded` caches)."""
    from tests.conftest import graded

    return graded(write_notebook(folder, name, cells), str(assignment))


def write_notebook(folder: Path, name: str, cells: list[str]) -> Path:
    """Save code cells as `folder/name.ipynb`."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.strip("\n")) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


XOR = FIXTURES / "xor-backprop"

XOR_NETWORK = """
from math import exp
from random import seed, random

def initialize_network(n_inputs, n_hidden, n_outputs):
    network = list()
    hidden_layer = [{'weights': [random() for i in range(n_inputs + 1)]} for i in range(n_hidden)]
    network.append(hidden_layer)
    output_layer = [{'weights': [random() for i in range(n_hidden + 1)]} for i in range(n_outputs)]
    network.append(output_layer)
    return network

def activate(weights, inputs):
    activation = weights[-1]
    for i in range(len(weights) - 1):
        activation += weights[i] * inputs[i]
    return activation

def transfer(activation):
    return 1.0 / (1.0 + exp(-activation))

def transfer_derivative(output):
    return output * (1.0 - output)
"""

XOR_BACKPROP = """
def forward_propagate(network, row):
    ### BEGIN SOLUTION
    inputs = row
    for layer in network:
        new_inputs = []
        for neuron in layer:
            activation = activate(neuron['weights'], inputs)
            neuron['output'] = transfer(activation)
            new_inputs.append(neuron['output'])
        inputs = new_inputs
    return inputs
    ### END SOLUTION

def backpropagate(network, expected):
    ### BEGIN SOLUTION
    for i in reversed(range(len(network))):
        layer = network[i]
        errors = list()
        if i != len(network) - 1:
            for j in range(len(layer)):
                error = 0.0
                for neuron in network[i + 1]:
                    error += (neuron['weights'][j] * neuron['delta'])
                errors.append(error)
        else:
            for j in range(len(layer)):
                neuron = layer[j]
                errors.append({error})
        for j in range(len(layer)):
            neuron = layer[j]
            neuron['{key}'] = errors[j] * transfer_derivative(neuron['output'])
    ### END SOLUTION
"""

XOR_TRAINING = """
seed(1)
dataset = [[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]]
network = initialize_network(2, 2, 2)
for row in dataset:
    outputs = forward_propagate(network, row)
    expected = [0, 0]
    expected[row[-1]] = 1
    backpropagate(network, expected)
print(network)
"""


def xor_source(error: str = "neuron['output'] - expected[j]", key: str = "delta") -> list[str]:
    """An XOR notebook in the course's style (the solution's blocks marked as nbgrader marks them):
    backpropagate writes `key` from the output `error`."""
    return [XOR_NETWORK, XOR_BACKPROP.format(error=error, key=key), XOR_TRAINING]


GLOBALS = FIXTURES / "globals-backprop"

GLOBALS_NETWORK = """
import numpy as np

sigma = lambda z : 1 / (1 + np.exp(-z))
d_sigma = lambda z : np.cosh(z/2)**(-2) / 4

def reset_network (n1 = 6, n2 = 7, random=np.random) :
    global W1, W2, W3, b1, b2, b3
    W1 = random.randn(n1, 1) / 2
    W2 = random.randn(n2, n1) / 2
    W3 = random.randn(2, n2) / 2
    b1 = random.randn(n1, 1) / 2
    b2 = random.randn(n2, 1) / 2
    b3 = random.randn(2, 1) / 2

def network_function(a0) :
    z1 = W1 @ a0 + b1
    a1 = sigma(z1)
    z2 = W2 @ a1 + b2
    a2 = sigma(z2)
    z3 = W3 @ a2 + b3
    a3 = sigma(z3)
    return a0, z1, a1, z2, a2, z3, a3

def cost(x, y) :
    return np.linalg.norm(network_function(x)[-1] - y)**2 / x.size
"""

GLOBALS_JACOBIANS = """
def J_W3 (x, y) :
    a0, z1, a1, z2, a2, z3, a3 = network_function(x)
    ### BEGIN SOLUTION
    J = 2 * (a3 - y)
    J = J * d_sigma(z3)
    J = J @ a2.T / x.size
    ### END SOLUTION
    return J

def J_b3 (x, y) :
    a0, z1, a1, z2, a2, z3, a3 = network_function(x)
    ### BEGIN SOLUTION
    J = 2 * (a3 - y)
    J = J * d_sigma(z3)
    J = np.sum(J, axis=1, keepdims=True) / x.size
    ### END SOLUTION
    return J

def J_W1 (x, y) :
    a0, z1, a1, z2, a2, z3, a3 = network_function(x)
    ### BEGIN SOLUTION
    J = {error}
    J = J * d_sigma(z3)
    J = (J.T @ W3).T
    J = J * d_sigma(z2)
    J = (J.T @ W2).T
    J = J * d_sigma(z1)
    J = J @ a0.T / x.size
    ### END SOLUTION
    return J
"""

GLOBALS_SETUP = """
np.random.seed(0)
x = np.random.rand(1, 10)
y = np.vstack([np.sin(x), np.cos(x)])
reset_network()
print(cost(x, y))
print(J_W3(x, y), J_b3(x, y), J_W1(x, y))
"""


def globals_source(error: str = "2 * (a3 - y)") -> list[str]:
    """The course's notebook: jacobians reading the weights `reset_network()` binds as globals;
    J_W1 starts from `error`."""
    return [GLOBALS_NETWORK, GLOBALS_JACOBIANS.format(error=error), GLOBALS_SETUP]


CS231N = FIXTURES / "cs231n-package"

CS231N_DATA_UTILS = """
import os
import numpy as np

def load_tiny(root):
    data = np.load(os.path.join(root, 'tiny.npz'))
    return data['X'], data['y']
"""

CS231N_CELLS = [
    "import numpy as np\n\n%load_ext autoreload\n%autoreload 2\nnp.random.seed(0)",
    "from cs231n.classifiers.neural_net import TwoLayerNet",
    "from cs231n.data_utils import load_tiny\n"
    "X_train, y_train = load_tiny('cs231n/datasets/tiny')\nprint('Train data shape: ', X_train.shape)",
    "net = TwoLayerNet(4, 10, 3, std=1e-1)\nloss, grads = net.loss(X_train, y_train, reg=0.05)\nprint(loss)",
]

# Python 2, as the course's older release wrote it: its import fails in a Python 3 kernel
PY2_LINE = "        print 'scores shape', scores.shape\n"


def cs231n_submission(folder: Path, name: str, factor: str = "2", py2: bool = False) -> Path:
    """A student's folder in the vision course's layout: the notebook, the package it imports
    (`cs231n/classifiers/neural_net.py` holding the student's TwoLayerNet) and a data folder."""
    root = folder / name
    package = root / "cs231n"
    (package / "classifiers").mkdir(parents=True)
    (package / "datasets" / "tiny").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "classifiers" / "__init__.py").write_text("")
    source = two_layer_source(factor=factor)[0]
    if py2:
        source = source.replace("        scores = h.dot(W2) + b2\n", "        scores = h.dot(W2) + b2\n" + PY2_LINE)
    (package / "classifiers" / "neural_net.py").write_text(source)
    (package / "data_utils.py").write_text(CS231N_DATA_UTILS)
    rng = np.random.default_rng(0)
    np.savez(package / "datasets" / "tiny" / "tiny.npz", X=rng.normal(size=(8, 4)), y=rng.integers(0, 3, 8))
    return write_notebook(root, name, CS231N_CELLS)


VARIABLES = FIXTURES / "variables-backprop"

VARIABLES_CELLS = [
    "import numpy as np",
    """# The given sample: two inputs, three hidden units, one output
x = np.array([[0.5], [0.2]])
y = np.array([[1.0]])
W1 = np.array([[0.1, -0.2], [0.4, 0.3], [-0.5, 0.2]])
W2 = np.array([[0.3, -0.6, 0.1]])""",
    """sigmoid = lambda z: 1 / (1 + np.exp(-z))
z1 = W1 @ x
a1 = sigmoid(z1)
z2 = W2 @ a1
y_hat = sigmoid(z2)
loss = 0.5 * np.sum((y_hat - y) ** 2)
print(loss)""",
    """delta2 = ({error}) * y_hat * (1 - y_hat)
dW2 = delta2 @ a1.T
delta1 = (W2.T @ delta2) * a1 * (1 - a1)
dW1 = delta1 @ x.T
print(dW1, dW2)""",
]


def variables_source(error: str = "y_hat - y") -> list[str]:
    """A backprop exercise of top-level statements only, its output error term `error`."""
    return [*VARIABLES_CELLS[:3], VARIABLES_CELLS[3].format(error=error)]


# the nanodegree's own use of its class: built, trained one step, run
BIKES_USE = """
np.random.seed(42)
features = np.random.normal(size=(5, 3))
targets = np.random.normal(size=(5, 1))
network = NeuralNetwork(3, 2, 1, 0.5)
network.train(features, targets)
print(network.run(features))
"""
