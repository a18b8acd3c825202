"""Reference for the 2-2-1 network with a sigmoid hidden layer and an exponential output.

z1 = W1 x + b1, a1 = sigmoid(z1), z2 = W2 a1 + b2, p = exp(z2), J = 1/2 (p - y)^2.
Shapes: x 2x1, W1 2x2, b1 2x1, W2 1x2, b2 1x1, y 1x1.

The variants model common wrong answers with the same autograd machinery: the network is
the same, only the local derivative the student used (or the loss) is swapped in.
"""

from collections.abc import Callable

import torch

from reference import Tensor, grad, half_squared_error, sigmoid, squared_error, with_derivative

Elementwise = Callable[[Tensor], Tensor]


def exp(z: Tensor) -> Tensor:
    """The output activation."""
    return torch.exp(z)


def forward(x, W1, b1, W2, b2, *, hidden: Elementwise = sigmoid, output: Elementwise = exp):
    """p = exp(W2 sigmoid(W1 x + b1) + b2)."""
    return output(W2 @ hidden(W1 @ x + b1) + b2)


def objective(x, y, W1, b1, W2, b2):
    """J = 1/2 (p - y)^2 on one sample."""
    return half_squared_error(forward(x, W1, b1, W2, b2), y)


def loss_of_output(p, y):
    """J = 1/2 (p - y)^2 of a forward pass's output (the student's own, for finite differences)."""
    return half_squared_error(p, y)


def gradients(x, y, W1, b1, W2, b2):
    """dJ/dW1, dJ/db1, dJ/dW2, dJ/db2 by autograd."""
    return grad(lambda W1, b1, W2, b2: objective(x, y, W1, b1, W2, b2), W1=W1, b1=b1, W2=W2, b2=b2)


# --- known wrong answers -------------------------------------------------------------------



def _variant_gradients(x, y, W1, b1, W2, b2, *, hidden=sigmoid, output=exp, loss=half_squared_error):
    def J(W1, b1, W2, b2):
        return loss(forward(x, W1, b1, W2, b2, hidden=hidden, output=output), y)

    return grad(J, W1=W1, b1=b1, W2=W2, b2=b2)


def gradients_output_as_sigmoid(x, y, W1, b1, W2, b2):
    """dp/dz2 taken as p (1 - p), as if the output were a sigmoid, instead of exp(z2) = p."""
    return _variant_gradients(
        x, y, W1, b1, W2, b2, output=with_derivative(exp, lambda z: exp(z) * (1 - exp(z)))
    )


def gradients_output_derivative_dropped(x, y, W1, b1, W2, b2):
    """dp/dz2 left out (taken as 1): dJ/dz2 = p - y."""
    return _variant_gradients(x, y, W1, b1, W2, b2, output=with_derivative(exp, torch.ones_like))


def gradients_hidden_sigma_for_sigma_prime(x, y, W1, b1, W2, b2):
    """sigma(z1) used where sigma'(z1) belongs in the hidden layer."""
    return _variant_gradients(x, y, W1, b1, W2, b2, hidden=with_derivative(sigmoid, sigmoid))


def gradients_loss_without_half(x, y, W1, b1, W2, b2):
    """Gradients of (p - y)^2 instead of 1/2 (p - y)^2: every gradient twice too large."""
    return _variant_gradients(x, y, W1, b1, W2, b2, loss=squared_error)


def forward_sigmoid_output(x, W1, b1, W2, b2):
    """The output taken as sigmoid(z2) instead of exp(z2)."""
    return forward(x, W1, b1, W2, b2, output=sigmoid)


def gradients_sigmoid_output(x, y, W1, b1, W2, b2):
    """The exact gradients of the network whose output is sigmoid(z2) instead of exp(z2)."""
    return _variant_gradients(x, y, W1, b1, W2, b2, output=sigmoid)
