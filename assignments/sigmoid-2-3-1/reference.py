"""Reference for the 2-3-1 sigmoid network (no biases, L = 1/2 (y - t)^2).

The variants model common wrong answers with the same autograd machinery: the network is
the same, only the local derivative the student used (or the loss) is swapped in.
"""

from collections.abc import Callable

import torch

from reference import derivative, grad, half_squared_error, sigmoid, squared_error, with_derivative

Tensor = torch.Tensor
Elementwise = Callable[[Tensor], Tensor]


def sigmoid_derivative(a):
    return derivative(sigmoid, a)


def forward(x, W1, W2, *, hidden: Elementwise = sigmoid, output: Elementwise = sigmoid):
    return output(W2 @ hidden(W1 @ x))


def loss(x, t, W1, W2):
    return half_squared_error(forward(x, W1, W2), t)


def loss_of_output(y, t):
    """L = 1/2 (y - t)^2 of a forward pass's output (the student's own, for finite differences)."""
    return half_squared_error(y, t)


def gradients(x, t, W1, W2):
    return grad(lambda W1, W2: loss(x, t, W1, W2), W1=W1, W2=W2)


# ------------------------------------------------------------------ intermediate values
# What a student computes on the way; feedback says which of them first goes wrong.


def hidden_preactivation(x, t, W1, W2):
    return W1 @ x


def hidden_activation(x, t, W1, W2):
    return sigmoid(W1 @ x)


def output_preactivation(x, t, W1, W2):
    return W2 @ sigmoid(W1 @ x)


def output_delta(x, t, W1, W2):
    """dL/da2, by autograd with respect to the output pre-activation."""
    a2 = output_preactivation(x, t, W1, W2)
    return grad(lambda a2: half_squared_error(sigmoid(a2), t), a2=a2)["a2"]


def hidden_delta(x, t, W1, W2):
    """dL/da1, by autograd with respect to the hidden pre-activations."""
    return grad(lambda a1: half_squared_error(sigmoid(W2 @ sigmoid(a1)), t), a1=W1 @ x)["a1"]


# ------------------------------------------------------------------ wrong variants



def _variant_gradients(x, t, W1, W2, *, hidden=sigmoid, output=sigmoid, loss=half_squared_error):
    return grad(lambda W1, W2: loss(forward(x, W1, W2, hidden=hidden, output=output), t), W1=W1, W2=W2)


def gradients_loss_without_half(x, t, W1, W2):
    """The gradients of (y - t)^2: the 1/2 of the loss dropped."""
    return _variant_gradients(x, t, W1, W2, loss=squared_error)


def gradients_sigma_for_sigma_prime(x, t, W1, W2):
    """sigma(a) used where sigma'(a) belongs, in both layers."""
    s = with_derivative(sigmoid, sigmoid)
    return _variant_gradients(x, t, W1, W2, hidden=s, output=s)


def gradients_output_derivative_dropped(x, t, W1, W2):
    """The output's sigma'(a2) left out: dL/da2 taken as y - t."""
    return _variant_gradients(x, t, W1, W2, output=with_derivative(sigmoid, torch.ones_like))


def forward_linear_output(x, W1, W2):
    """The output sigmoid left out: y = W2 sigmoid(W1 x)."""
    return forward(x, W1, W2, output=lambda z: z)


def gradients_linear_output(x, t, W1, W2):
    """The exact gradients of the network without its output sigmoid."""
    return _variant_gradients(x, t, W1, W2, output=lambda z: z)


def sigmoid_derivative_of_input(a):
    """a (1 - a): the formula s (1 - s) applied to the input instead of to s = sigmoid(a)."""
    return a * (1 - a)
