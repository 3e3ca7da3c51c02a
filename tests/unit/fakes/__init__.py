"""Hand-written in-memory stand-ins for the adapters the use cases in `batchdrop.jobs` call.

Each fake keeps the adapter's method names and signatures, holds its state in plain dicts and
reproduces the decisions the real service makes for the code (a conditional write that loses,
an object written only where none is), so a use case runs against them in milliseconds. The
moto + simulator suite remains the proof that the real adapters behave the same way.
"""
