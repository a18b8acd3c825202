"""Runs as `python -I -c` in a kernel's interpreter (never imports the grader): prints, as a JSON
list, that interpreter's prefixes and the site-packages folders on its path (`interpreter_dirs`)."""

import json
import sys


def main():
    print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                      *(p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages")))]))


if __name__ == "__main__":
    main()
