"""Reference for the 2-2-2 tanh/softmax classifier of two Gaussian classes.

Columns are samples: X is (2, m), Y is one-hot (2, m) (row k is class k).
Z1 = W1 X + b1, A1 = tanh(Z1), Z2 = W2 A1 + b2, A2 = softmax(Z2) over the class axis,
J = 1/(2m) sum (A2 - Y)^2 - 1/m sum Y log A2.
Class 0 has both coordinates ~ N(1, 0.5), class 1 both ~ N(2, 0.2).
Every gradient comes from autograd, the wrong variants included.
"""

import numpy as np
import torch

from reference import grad, softmax, tanh

PARAM_SHAPES = {"W1": (2, 2), "b1": (2, 1), "W2": (2, 2), "b2": (2, 1)}
CLASS_MEAN = (1.0, 2.0)
CLASS_STD = (0.5, 0.2)


def _m(Y):
    return Y.shape[1]


def forward(X, params):
    """A2 = softmax(W2 tanh(W1 X + b1) + b2), shape (2, m)."""
    A1 = tanh(params["W1"] @ X + params["b1"])
    return softmax(params["W2"] @ A1 + params["b2"], dim=0)


def cost(A2, Y):
    """J = 1/(2m) sum (A2 - Y)^2 - 1/m sum Y log A2."""
    m = _m(Y)
    return ((A2 - Y) ** 2).sum() / (2 * m) - (Y * torch.log(A2)).sum() / m


def loss(X, Y, params):
    """J as a function of the data and the parameters."""
    return cost(forward(X, params), Y)


def gradients(X, Y, params):
    """dJ/dparam for every parameter, by autograd."""
    return grad(lambda **p: loss(X, Y, p), **params)


def update(params, grads, lr):
    """One gradient-descent step: param - lr * grad."""
    return {k: params[k] - lr * grads[k] for k in params}


def init_params(seed):
    """Deterministic small random weights and zero biases."""
    g = torch.Generator().manual_seed(int(seed))
    return {
        k: (torch.randn(*shape, generator=g, dtype=torch.float64) if k.startswith("W")
            else torch.zeros(*shape, dtype=torch.float64))
        for k, shape in PARAM_SHAPES.items()
    }


def train(X, Y, lr, epochs, seed):
    """Plain full-batch gradient descent from init_params(seed) for `epochs` steps."""
    params = init_params(seed)
    for _ in range(int(epochs)):
        params = update(params, gradients(X, Y, params), lr)
    return params


def predict(X, params):
    """Class labels (m,): the row of the largest output."""
    return torch.argmax(forward(X, params), dim=0).to(torch.float64)


def accuracy(labels, Y):
    """Fraction of samples whose label is the row of Y's 1."""
    return float((labels == torch.argmax(Y, dim=0)).to(torch.float64).mean())


def reference_accuracy(X, Y, lr, epochs, seed, X_test, Y_test):
    """The test accuracy the reference training reaches."""
    return accuracy(predict(X_test, train(X, Y, lr, epochs, seed)), Y_test)


# The sample the notebook gives: six points, three of each class, and starting parameters.
GIVEN_X = [[0.62, 1.95, 1.31, 2.18, 0.47, 1.83], [1.12, 2.07, 0.84, 1.76, 0.91, 2.21]]
GIVEN_Y = [[1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1]]
GIVEN_PARAMS = {
    "W1": [[0.5, -0.3], [0.8, 0.2]],
    "b1": [[0.1], [-0.1]],
    "W2": [[1.0, -0.6], [-0.4, 0.9]],
    "b2": [[0.0], [0.2]],
}
GIVEN_LR = 0.1


# Input generators: fn(rng, trial) -> dict of inputs (numpy), drawn by the grader.


def given_sample(rng, trial):
    """The notebook's sample, with the reference's A2 and gradients on it (for cost and update)."""
    X = torch.tensor(GIVEN_X, dtype=torch.float64)
    Y = torch.tensor(GIVEN_Y, dtype=torch.float64)
    params = {k: torch.tensor(v, dtype=torch.float64) for k, v in GIVEN_PARAMS.items()}
    grads = gradients(X, Y, params)
    return {
        "X": X.numpy(),
        "Y": Y.numpy(),
        "params": {k: v.numpy() for k, v in params.items()},
        "A2": forward(X, params).numpy(),
        "grads": {k: v.numpy() for k, v in grads.items()},
        "lr": GIVEN_LR,
    }


def gaussians(rng, m):
    """m samples of the two classes (balanced up to one), shuffled: X (2, m), one-hot Y (2, m)."""
    labels = rng.permutation(np.arange(m) % 2)
    mean = np.asarray(CLASS_MEAN)[labels]
    std = np.asarray(CLASS_STD)[labels]
    X = mean + std * rng.standard_normal((2, m))
    Y = np.zeros((2, m))
    Y[labels, np.arange(m)] = 1.0
    return X, Y


def random_params(rng):
    """Parameters of the declared shapes, on the scale training produces."""
    return {k: rng.normal(0.0, 1.0, size=shape) for k, shape in PARAM_SHAPES.items()}


BATCH_SIZES = (7, 1, 32)


def draw_batch(rng, trial):
    """A batch of data, parameters and a softmax output (for forward, cost and gradients)."""
    m = BATCH_SIZES[trial % len(BATCH_SIZES)]
    X, Y = gaussians(rng, m)
    logits = rng.normal(0.0, 2.0, size=(2, m))
    A2 = np.exp(logits) / np.exp(logits).sum(axis=0)
    return {"X": X, "Y": Y, "params": random_params(rng), "A2": A2}


def draw_extreme(rng, trial):
    """The given points with output weights and biases so large that Z2 reaches about +-1000:
    valid inputs on which exp(Z2) overflows unless the softmax is computed stably."""
    params = {k: np.asarray(v, dtype=np.float64) for k, v in GIVEN_PARAMS.items()}
    params["W2"] = np.array([[2000.0, -1500.0], [-1800.0, 2200.0]])
    params["b2"] = np.array([[900.0], [-700.0]])
    return {"X": np.asarray(GIVEN_X, dtype=np.float64), "params": params}


def draw_step(rng, trial):
    """Parameters, gradients of the same shapes, and a learning rate (for update)."""
    return {
        "params": random_params(rng),
        "grads": random_params(rng),
        "lr": float(rng.choice([0.01, 0.1, 0.5, 1.0])),
    }


def draw_training(rng, trial):
    """Training and fresh test data, with the training settings (for train/predict)."""
    X, Y = gaussians(rng, 200)
    X_test, Y_test = gaussians(rng, 500)
    return {"X": X, "Y": Y, "X_test": X_test, "Y_test": Y_test,
            "lr": 0.5, "epochs": 300, "seed": int(rng.integers(0, 2**31 - 1))}


# Wrong variants: what a common mistake produces, by autograd on the mistaken model or cost.


def forward_softmax_over_samples(X, params):
    """Softmax taken along the batch axis (each class row sums to 1) instead of over classes."""
    A1 = tanh(params["W1"] @ X + params["b1"])
    return softmax(params["W2"] @ A1 + params["b2"], dim=1)


def _softmax_diagonal(Z2):
    """Softmax whose autograd derivative keeps only the Jacobian's diagonal A(1 - A):
    each output sees the other classes' exponentials as constants."""
    E = torch.exp(Z2 - Z2.max(dim=0, keepdim=True).values.detach())
    others = (E.sum(dim=0, keepdim=True) - E).detach()
    return E / (E + others)


def gradients_elementwise_softmax(X, Y, params):
    """The seed's dJ/dZ2 = (A2 - Y) * (softmax'(Z2) + 1) / m with softmax'(Z2) = A2 (1 - A2)
    elementwise, propagated to every parameter."""

    def mistaken(**p):
        m = _m(Y)
        Z2 = p["W2"] @ tanh(p["W1"] @ X + p["b1"]) + p["b2"]
        # squared part through the diagonal-only derivative; log part exact (its dJ/dZ2 is A2 - Y)
        squared = ((_softmax_diagonal(Z2) - Y) ** 2).sum() / (2 * m)
        return squared - (Y * torch.log(softmax(Z2, dim=0))).sum() / m

    return grad(mistaken, **params)


def gradients_sum_not_mean(X, Y, params):
    """Gradients of m * J: the 1/m averaging forgotten."""
    return grad(lambda **p: _m(Y) * cost(forward(X, p), Y), **params)


def _cost_squared_without_half(A2, Y):
    m = _m(Y)
    return ((A2 - Y) ** 2).sum() / m - (Y * torch.log(A2)).sum() / m


def cost_squared_without_half(A2, Y):
    """The cost with 1/m instead of 1/(2m) in front of the squared error."""
    return _cost_squared_without_half(A2, Y)


def cost_sum_not_mean(A2, Y):
    """The cost summed over the batch instead of averaged."""
    return _m(Y) * cost(A2, Y)


def gradients_squared_without_half(X, Y, params):
    """Gradients of the cost with the squared error's 1/2 dropped."""
    return grad(lambda **p: _cost_squared_without_half(forward(X, p), Y), **params)


def cost_mean_over_entries(A2, Y):
    """The cost with np.mean over all 2m entries (classes and samples) instead of the m samples."""
    return ((A2 - Y) ** 2).mean() / 2 - (Y * torch.log(A2)).mean()
