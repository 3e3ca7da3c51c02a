"""batchdrop: validate a dropped OpenAI Batch API file and submit it."""
