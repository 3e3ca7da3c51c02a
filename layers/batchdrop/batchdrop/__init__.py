"""batchdrop: validate a dropped OpenAI Batch API file, submit it, and bring the results home."""

# The service's logger name. Modules log through child loggers named after it, so they join the
# handler's logger whatever the environment held when they were first imported.
SERVICE = "batchdrop"
