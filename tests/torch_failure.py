"""A `sitecustomize.py` that makes the first import of torch.nn fail in one program (as a torch
import can, once, on a machine out of memory), which leaves torch impossible to import again in
that process. Put its folder first on a Python's path to arm it there."""

from __future__ import annotations

from pathlib import Path

SHIM = """
import importlib.abc, os, sys

class _FailOnce(importlib.abc.MetaPathFinder):
    armed = True

    def find_spec(self, name, path, target=None):
        if self.armed and name == "torch.nn" and os.path.basename(sys.argv[0]) == {program!r}:
            self.armed = False
            raise OSError("cannot map libtorch: out of memory")
        return None

sys.meta_path.insert(0, _FailOnce())
"""


def torch_fails_once(folder: Path, program: str) -> Path:
    """`folder`, holding the shim armed in processes whose `sys.argv[0]` is named `program`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SHIM.format(program=program))
    return folder
