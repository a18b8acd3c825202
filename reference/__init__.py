"""Torch building blocks shared by the assignments' reference solutions.

A reference reads like the maths: forward pass and loss in a few lines of torch, every
gradient from autograd. Nothing here is written out by hand.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor
DTYPE = torch.float64


def sigmoid(z: Tensor) -> Tensor:
    """Logistic function."""
    return torch.sigmoid(z)


def relu(z: Tensor) -> Tensor:
    """max(0, z)."""
    return torch.relu(z)


def tanh(z: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return torch.tanh(z)


def softmax(z: Tensor, dim: int = 0) -> Tensor:
    """Softmax along `dim` (the class axis; columns are samples by default)."""
    return torch.softmax(z, dim=dim)


def derivative(f: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """Elementwise derivative f'(z) of an elementwise function, by autograd."""
    z = z.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(z).sum(), z)
    return g


def with_derivative(f: Callable[[Tensor], Tensor], df: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """An elementwise function with the value of f but whose autograd derivative is df.

    Builds wrong-answer variants by autograd: a student whose forward pass is right but who
    multiplies by df in the backward pass (d/dz [c * (z - z.detach())] = c; the term's value is 0).
    """

    def g(z: Tensor) -> Tensor:
        return f(z).detach() + df(z).detach() * (z - z.detach())

    return g


def grad(loss: Callable[..., Tensor], **params: Tensor) -> dict[str, Tensor]:
    """Gradients of the scalar `loss(**params)` with respect to every parameter, by autograd."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    value = loss(**leaves)
    if value.numel() != 1:
        raise ValueError(f"loss must be a scalar, got shape {tuple(value.shape)}")
    grads = torch.autograd.grad(value.sum(), list(leaves.values()), allow_unused=True)
    return {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads)}


def half_squared_error(y: Tensor, t: Tensor) -> Tensor:
    """L = 1/2 * sum (y - t)^2."""
    return 0.5 * ((y - t) ** 2).sum()


def squared_error(y: Tensor, t: Tensor) -> Tensor:
    """L = sum (y - t)^2."""
    return ((y - t) ** 2).sum()
