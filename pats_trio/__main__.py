"""`python -m pats_trio` does what the `pats-trio` command does."""

from pats_trio.cli import main

main()
