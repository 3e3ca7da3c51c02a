"""Hand-written in-memory stand-ins for the ports (`batchdrop.ports`) the use cases call.

Each fake implements its port, as `make typecheck` checks (mypy, through `world.py`, which hands
them to the use cases), holds its state in plain dicts and reproduces the decisions the real
service makes for the code (a conditional write that loses, an object written only where none
is), so a use case runs against them in milliseconds. The moto + simulator suite remains the
proof that the real adapters behave the same way.
"""
