"""`python -m benchmarks`: run every measurement and write docs/benchmarks.md."""

from benchmarks.runner import main

main()
