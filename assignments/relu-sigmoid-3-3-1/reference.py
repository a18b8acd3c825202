"""Reference for the 3-3-1 network with a ReLU hidden layer and a sigmoid output.

Z1 = W1 x + b1, A1 = relu(Z1), Z2 = W2 A1 + b2, A2 = sigmoid(Z2), L = (A2 - Y)^2.
Shapes: x 3x1, W1 3x3, b1 3x1, W2 1x3, b2 1x1, Y 1x1.

The variants model common wrong answers with the same autograd machinery: the network is
the same, only the local derivative the student used (or the loss) is swapped in.
"""

from collections.abc import Callable

import numpy as np
import torch

from reference import Tensor, derivative, grad, relu, sigmoid, squared_error, with_derivative

Elementwise = Callable[[Tensor], Tensor]


def relu_derivative(z: Tensor) -> Tensor:
    """ReLU'(z): 1 where z > 0, else 0."""
    return derivative(relu, z)


def forward(x, W1, b1, W2, b2, *, hidden: Elementwise = relu, output: Elementwise = sigmoid):
    """A2 = sigmoid(W2 relu(W1 x + b1) + b2)."""
    return output(W2 @ hidden(W1 @ x + b1) + b2)


def loss(A2, Y):
    """L = (A2 - Y)^2 (summed over outputs; there is one)."""
    return squared_error(A2, Y)


def objective(x, Y, W1, b1, W2, b2):
    """L as a function of the sample and the parameters."""
    return loss(forward(x, W1, b1, W2, b2), Y)


def gradients(x, Y, W1, b1, W2, b2):
    """dL/dW1, dL/db1, dL/dW2, dL/db2 by autograd."""
    return grad(lambda W1, b1, W2, b2: objective(x, Y, W1, b1, W2, b2), W1=W1, b1=b1, W2=W2, b2=b2)


# --- intermediate values (feedback says which of a student's first goes wrong) ------------


def pre_hidden(x, Y, W1, b1, W2, b2):
    return W1 @ x + b1


def hidden(x, Y, W1, b1, W2, b2):
    return relu(W1 @ x + b1)


def pre_output(x, Y, W1, b1, W2, b2):
    return W2 @ relu(W1 @ x + b1) + b2


def output(x, Y, W1, b1, W2, b2):
    return forward(x, W1, b1, W2, b2)


def dL_dA2(x, Y, W1, b1, W2, b2):
    return grad(lambda A2: loss(A2, Y), A2=output(x, Y, W1, b1, W2, b2))["A2"]


def dL_dZ2(x, Y, W1, b1, W2, b2):
    return grad(lambda Z2: loss(sigmoid(Z2), Y), Z2=pre_output(x, Y, W1, b1, W2, b2))["Z2"]


def dL_dA1(x, Y, W1, b1, W2, b2):
    return grad(lambda A1: loss(sigmoid(W2 @ A1 + b2), Y), A1=hidden(x, Y, W1, b1, W2, b2))["A1"]


def dL_dZ1(x, Y, W1, b1, W2, b2):
    return grad(lambda Z1: loss(sigmoid(W2 @ relu(Z1) + b2), Y), Z1=pre_hidden(x, Y, W1, b1, W2, b2))["Z1"]


# --- hidden inputs ---------------------------------------------------------------------------

# Well-conditioned draws: every hidden pre-activation at least this far from the ReLU kink,
# at least one hidden unit active and one inactive, and the output sigmoid not saturated.
KINK_MARGIN = 0.1
MAX_OUTPUT_Z = 4.0


def draw_network(rng: np.random.Generator, trial: int) -> dict[str, np.ndarray]:
    """A random sample and parameters on which the problem is well-conditioned."""
    for _ in range(10_000):
        x = rng.uniform(-2.0, 2.0, size=(3, 1))
        W1 = rng.normal(0.0, 1.0, size=(3, 3))
        b1 = rng.normal(0.5, 0.5, size=(3, 1))  # leaning towards active units
        W2 = rng.normal(0.0, 1.0, size=(1, 3))
        b2 = rng.normal(0.0, 0.5, size=(1, 1))
        Z1 = W1 @ x + b1
        Z2 = W2 @ np.maximum(Z1, 0.0) + b2
        if (
            np.abs(Z1).min() >= KINK_MARGIN
            and (Z1 > 0).any()
            and (Z1 < 0).any()
            and abs(Z2.item()) <= MAX_OUTPUT_Z
        ):
            return {"x": x, "W1": W1, "b1": b1, "W2": W2, "b2": b2}
    raise RuntimeError("no well-conditioned network found in 10000 draws")


# --- known wrong answers -------------------------------------------------------------------



def _variant_gradients(x, Y, W1, b1, W2, b2, *, hidden=relu, output=sigmoid, loss_fn=loss):
    def L(W1, b1, W2, b2):
        return loss_fn(forward(x, W1, b1, W2, b2, hidden=hidden, output=output), Y)

    return grad(L, W1=W1, b1=b1, W2=W2, b2=b2)


def rounded_sigmoid_derivative(z: Tensor) -> Tensor:
    """sigma'(z) as computed from sigma(z) rounded to three decimals: 0 wherever sigma(z) rounds to 0 or 1."""
    s = torch.round(sigmoid(z), decimals=3)
    return torch.where((s > 0) & (s < 1), derivative(sigmoid, z), torch.zeros_like(z))


def gradients_sigmoid_rounded(x, Y, W1, b1, W2, b2):
    """The output sigmoid rounded to 1 when saturated, so sigma'(Z2) = 0 and every gradient is 0."""
    return _variant_gradients(
        x, Y, W1, b1, W2, b2, output=with_derivative(sigmoid, rounded_sigmoid_derivative)
    )


def gradients_sigma_for_sigma_prime(x, Y, W1, b1, W2, b2):
    """sigma(Z2) used where sigma'(Z2) belongs: dL/dZ2 = dL/dA2 * sigma(Z2)."""
    return _variant_gradients(x, Y, W1, b1, W2, b2, output=with_derivative(sigmoid, sigmoid))


def gradients_relu_for_relu_prime(x, Y, W1, b1, W2, b2):
    """relu(Z1) = A1 used where relu'(Z1) belongs: dL/dZ1 = dL/dA1 * A1."""
    return _variant_gradients(x, Y, W1, b1, W2, b2, hidden=with_derivative(relu, relu))


def gradients_relu_mask_missing(x, Y, W1, b1, W2, b2):
    """relu'(Z1) taken as 1 everywhere, so inactive hidden units still pass gradient back."""
    return _variant_gradients(x, Y, W1, b1, W2, b2, hidden=with_derivative(relu, torch.ones_like))


def loss_with_half(A2, Y):
    """1/2 (A2 - Y)^2: a 1/2 the loss does not have."""
    return 0.5 * squared_error(A2, Y)


def objective_with_half(x, Y, W1, b1, W2, b2):
    """L computed with a 1/2 the loss does not have."""
    return loss_with_half(forward(x, W1, b1, W2, b2), Y)


def gradients_loss_with_half(x, Y, W1, b1, W2, b2):
    """Gradients of 1/2 (A2 - Y)^2: the factor 2 of d/dA2 (A2 - Y)^2 is missing."""
    return _variant_gradients(x, Y, W1, b1, W2, b2, loss_fn=loss_with_half)
