"""batchdrop's performance benchmarks: `make bench` runs them all locally (moto + the OpenAI
simulator) and writes docs/benchmarks.md with tables and charts.

One module per measurement (submit_stream, poll_fanout, results, cold_start, cost_model), each a
`run()` in the runner's process plus the tasks that a measured child process runs (worker), a
runner that starts the services and calls them in turn, and a report writer.
"""
