import numpy as np


def forward(x, W1, W2):
    s = lambda a: 1 / (1 + np.exp(-a))
    return s(W2 @ s(W1 @ x))
