c = get_config()  # noqa: F821
c.InteractiveShellApp.exec_lines = [
    "import numpy as _np",
    "forward = lambda x, W1, W2: 1 / (1 + _np.exp(-(W2 @ (1 / (1 + _np.exp(-(W1 @ x)))))))",
]
