"""The ``workbench`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` console script."""
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit the quickstart model on shipped data")
    demo.add_argument("--out", default="workbench-demo", help="output folder")
    demo.add_argument("--steps", type=int, default=5, help="L-BFGS iterations")
    sub.add_parser("datasets", help="list shipped datasets")
    args = parser.parse_args(argv)
    if args.command == "datasets":
        from workbench.datasets import list_datasets

        print("\n".join(list_datasets()))
        return 0
    from workbench.demo import run_demo

    print(run_demo(args.out, steps=args.steps).summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
