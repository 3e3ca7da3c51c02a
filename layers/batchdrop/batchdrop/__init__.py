"""batchdrop: validate a dropped OpenAI Batch API file, submit it, and bring the results home.

The package is layered, and `make lint` holds it to that (import-linter; the contracts are in
pyproject.toml). `runtime` is the composition root: it builds the adapters from `settings` and
hands them to the use cases. `jobs/` holds the use cases; they decide with the pure rules of
`domain/` and reach the world only through the Protocols of `ports`. `adapters/` play those
ports over boto3 and requests, and know neither the use cases nor the domain. Beneath them all,
`records` (the shapes of job and batch records, and of OpenAI's batch) and `errors` are shared
by every layer and import nothing else of batchdrop. Only the adapters import boto3, botocore
or requests.
"""

# The service's logger name. Modules log through child loggers named after it, so they join the
# handler's logger whatever the environment held when they were first imported.
SERVICE = "batchdrop"
