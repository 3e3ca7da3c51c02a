"""Local stand-ins for external services (development, tests, benchmarks)."""
