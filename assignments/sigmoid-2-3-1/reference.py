"""Reference for the 2-3-1 sigmoid network (no biases, L = 1/2 (y - t)^2)."""

from reference import derivative, grad, half_squared_error, sigmoid


def sigmoid_derivative(a):
    return derivative(sigmoid, a)


def forward(x, W1, W2):
    return sigmoid(W2 @ sigmoid(W1 @ x))


def loss(x, t, W1, W2):
    return half_squared_error(forward(x, W1, W2), t)


def gradients(x, t, W1, W2):
    return grad(lambda W1, W2: loss(x, t, W1, W2), W1=W1, W2=W2)
