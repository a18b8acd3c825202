"""Reference for the 2-2-2 sigmoid network with scalar weights w1..w8 and shared biases.

h1 = s(w1 x1 + w2 x2 + b1), h2 = s(w3 x1 + w4 x2 + b1)   (b1 shared by both hidden units)
o1 = s(w5 h1 + w6 h2 + b2), o2 = s(w7 h1 + w8 h2 + b2)   (b2 shared by both outputs)
L = (o1 - t1)^2 + (o2 - t2)^2

`w` is an array of 8 (w[0] is w1), `b` an array of 2 (b[0] is b1), `x` and `target` arrays
of 2. Every gradient comes from autograd, the wrong variants included.
"""

import torch

from reference import grad, half_squared_error, sigmoid, squared_error


def _network(x, w, b_hidden, b_out, act=sigmoid):
    """Outputs (o1, o2) with one bias per unit: b_hidden = (bias of h1, of h2), b_out likewise."""
    h1 = act(w[0] * x[0] + w[1] * x[1] + b_hidden[0])
    h2 = act(w[2] * x[0] + w[3] * x[1] + b_hidden[1])
    o1 = act(w[4] * h1 + w[5] * h2 + b_out[0])
    o2 = act(w[6] * h1 + w[7] * h2 + b_out[1])
    return torch.stack([o1, o2])


def forward(x, w, b):
    """The outputs o = (o1, o2)."""
    return _network(x, w, (b[0], b[0]), (b[1], b[1]))


def loss(x, target, w, b):
    """L = (o1 - t1)^2 + (o2 - t2)^2."""
    return squared_error(forward(x, w, b), target)


def loss_of_output(o, target):
    """L of a forward pass's output (the student's own, for finite differences)."""
    return squared_error(o, target)


def gradients(x, target, w, b):
    """{"w": dL/dw (8,), "b": dL/db (2,)}."""
    return grad(lambda w, b: loss(x, target, w, b), w=w, b=b)


def _weight(grads, k):
    """dL/dwk alone (k counts from 1, as the notebook does)."""
    return grads["w"][k - 1]


def dL_dw7(x, target, w, b):
    """dL/dw7 (the notebook's variable)."""
    return _weight(gradients(x, target, w, b), 7)


def dL_dw3(x, target, w, b):
    """dL/dw3 (the notebook's variable)."""
    return _weight(gradients(x, target, w, b), 3)


# Wrong variants: the gradients a common mistake produces, by autograd on the mistaken model.


def _bias_through_one_path(x, target, w, b, unit):
    """dL/db when each shared bias is followed through one unit only (h1/o1 or h2/o2)."""
    b = b.detach()
    copies = {"b1a": b[0], "b1b": b[0], "b2a": b[1], "b2b": b[1]}

    def mistaken(w, b1a, b1b, b2a, b2b):
        return squared_error(_network(x, w, (b1a, b1b), (b2a, b2b)), target)

    g = grad(mistaken, w=w, **copies)
    side = "a" if unit == 0 else "b"
    return {"w": g["w"], "b": torch.stack([g[f"b1{side}"], g[f"b2{side}"]])}


def gradients_bias_first_unit(x, target, w, b):
    """Shared biases counted once: dL/db1 only through h1, dL/db2 only through o1."""
    return _bias_through_one_path(x, target, w, b, 0)


def gradients_bias_second_unit(x, target, w, b):
    """Shared biases counted once: dL/db1 only through h2, dL/db2 only through o2."""
    return _bias_through_one_path(x, target, w, b, 1)


def gradients_half_loss(x, target, w, b):
    """Gradients of 1/2 [(o1 - t1)^2 + (o2 - t2)^2]: the 2 from d/do (o - t)^2 dropped."""
    return grad(lambda w, b: half_squared_error(forward(x, w, b), target), w=w, b=b)


def gradients_plus_first_error(x, target, w, b):
    """Gradients of (o1 + t1)^2 + (o2 - t2)^2, the loss as the seed's first line writes it."""

    def mistaken(w, b):
        o = forward(x, w, b)
        return (o[0] + target[0]) ** 2 + (o[1] - target[1]) ** 2

    return grad(mistaken, w=w, b=b)


def _sigmoid_with_sigmoid_slope(z):
    """sigmoid(z) whose autograd derivative is sigmoid(z) instead of sigmoid(z)(1 - sigmoid(z)):
    softplus is an antiderivative of the sigmoid, so only its slope is kept."""
    soft = torch.nn.functional.softplus(z)
    return sigmoid(z).detach() + soft - soft.detach()


def gradients_sigmoid_for_derivative(x, target, w, b):
    """Gradients with s(z) used where s'(z) = s(z)(1 - s(z)) belongs, at every unit."""

    def mistaken(w, b):
        o = _network(x, w, (b[0], b[0]), (b[1], b[1]), act=_sigmoid_with_sigmoid_slope)
        return squared_error(o, target)

    return grad(mistaken, w=w, b=b)


def dL_dw7_half_loss(x, target, w, b):
    """dL/dw7 of 1/2 [(o1 - t1)^2 + (o2 - t2)^2]."""
    return _weight(gradients_half_loss(x, target, w, b), 7)


def dL_dw3_half_loss(x, target, w, b):
    """dL/dw3 of 1/2 [(o1 - t1)^2 + (o2 - t2)^2]."""
    return _weight(gradients_half_loss(x, target, w, b), 3)


def dL_dw7_sigmoid_for_derivative(x, target, w, b):
    """dL/dw7 with s(z) used where s'(z) belongs."""
    return _weight(gradients_sigmoid_for_derivative(x, target, w, b), 7)


def dL_dw3_sigmoid_for_derivative(x, target, w, b):
    """dL/dw3 with s(z) used where s'(z) belongs."""
    return _weight(gradients_sigmoid_for_derivative(x, target, w, b), 3)
