"""Shadows numpy for whatever imports it from the working folder."""
import os

os._exit(9)
