"""``python -m nbtools``: the ``nbtools`` command line, also where no console script is on PATH."""

from __future__ import annotations

from nbtools.cli import main

if __name__ == "__main__":
    main()
