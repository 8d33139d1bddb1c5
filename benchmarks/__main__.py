"""``python -m benchmarks [--quick]``: run the benchmarks and print the table of ratios."""

from __future__ import annotations

if __name__ == "__main__":
    # Guarded: worker processes started with "spawn" import this module as __mp_main__.
    from benchmarks.cli import main

    raise SystemExit(main())
