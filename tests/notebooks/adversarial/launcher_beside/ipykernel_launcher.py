"""Runs instead of the kernel if the working folder comes first on sys.path."""
import os

os._exit(7)
