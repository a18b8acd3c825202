"""Built-in aliases: the names students commonly give the usual functions and gradients.

A spec names a function once (`target = "sigmoid_derivative"`); the grader also looks for
`sigmoid_prime`, `dsigmoid`, ... An assignment extends these with its own `aliases` (per
check, or assignment-wide in an `[aliases]` table) or switches them off with
`builtin_aliases = false`.
"""

from __future__ import annotations

import re

# Each group: the usual names of one function, most common first. A target in a group gets the
# group's other names.
FUNCTION_GROUPS: tuple[tuple[str, ...], ...] = (
    ("forward", "forward_pass", "forward_propagation", "feedforward", "forward_prop"),
    ("gradients", "backward", "backprop", "backpropagation", "backward_pass", "compute_gradients", "grads"),
    ("sigmoid", "sigma", "logistic", "sigmoid_function", "sig"),
    ("sigmoid_derivative", "sigmoid_prime", "dsigmoid", "sigmoid_deriv", "d_sigmoid", "sigmoid_grad", "sigmoid_der"),
    ("relu", "ReLU", "relu_function", "rectifier"),
    ("relu_derivative", "relu_prime", "drelu", "relu_deriv", "d_relu", "relu_grad", "relu_der", "relu_backward"),
    ("tanh_derivative", "tanh_prime", "dtanh", "tanh_deriv", "d_tanh", "tanh_grad"),
    ("softmax", "soft_max", "softmax_function"),
    ("loss", "loss_function", "compute_loss", "squared_error", "mse"),
    ("cost", "compute_cost", "loss", "J"),
    ("update", "update_parameters", "update_params", "gradient_step", "step"),
    ("predict", "predict_labels", "classify"),
    ("train", "train_model", "train_network", "fit"),
)

GRADIENT_NAME = re.compile(r"^d([A-Za-z])_d([A-Za-z]\w*)$")  # dL_dW1, dJ_db2, dE_dw7


def function_aliases(name: str) -> list[str]:
    """Other names of a usual function (empty for a name in no group)."""
    for group in FUNCTION_GROUPS:
        if name in group:
            return [n for n in group if n != name]
    return []


def gradient_variable_aliases(name: str) -> list[str]:
    """Spellings of a gradient variable: dL_dW1 -> dLdW1, dL_dw1, dW1, grad_W1."""
    m = GRADIENT_NAME.match(name)
    if not m:
        return []
    of, wrt = m.group(1), m.group(2)
    out = [f"d{of}d{wrt}"]
    if wrt[0] in "Ww":  # weights are written W1 and w1 alike; biases are b1
        out.append(f"d{of}_d{wrt[0].swapcase()}{wrt[1:]}")
    if of != "L":
        out.append(f"dL_d{wrt}")
    out += [f"d{wrt}", f"grad_{wrt}"]
    return _unique([n for n in out if n != name])


def gradient_part_aliases(key: str) -> list[str]:
    """Keys a student may give one gradient in a returned dict: W1 -> dL_dW1, dW1, grad_W1."""
    return [f"dL_d{key}", f"d{key}", f"grad_{key}"]


def builtin_aliases(name: str) -> list[str]:
    """Every built-in alias of a function or variable name."""
    return function_aliases(name) or gradient_variable_aliases(name)


def merge(*lists: list[str], exclude: str = "") -> list[str]:
    """Names in order, each once, without `exclude` (the target itself)."""
    return _unique([n for names in lists for n in names if n != exclude])


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


# What to write instead, said when a usual function gives nan/inf on extreme inputs ({x}: its argument).
STABLE_HINTS = {
    "sigmoid": "Never take exp of a large positive number: with e = exp(-|{x}|), sigmoid({x}) is "
               "1 / (1 + e) for {x} >= 0 and e / (1 + e) for {x} < 0.",
    "sigmoid_derivative": "Compute it from a stable sigmoid: s = sigmoid({x}), then s * (1 - s); "
                          "exp(-{x}) / (1 + exp(-{x}))**2 is inf / inf = nan for large negative {x}.",
}


def stable_hint(name: str, arg: str) -> str:
    """The built-in stability hint for a usual function (or one of its aliases), or ""."""
    for canonical, hint in STABLE_HINTS.items():
        if name == canonical or name in function_aliases(canonical):
            return hint.format(x=arg)
    return ""
