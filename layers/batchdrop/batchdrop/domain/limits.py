"""The limits a file is validated and split against, with their defaults, in one place.

OpenAI fixes the limits of one batch; the deployment chooses the caps on one whole file (the
template's MaxFileBytes and MaxFileRequests say why), and `Settings` reads them from the
environment. Tests and benchmarks shrink any of them to exercise a split cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

# OpenAI's limits for one batch input file.
MAX_REQUESTS_PER_BATCH = 50_000
MAX_BATCH_BYTES = 200 * 1024 * 1024
# OpenAI's limit on the inputs of one /v1/embeddings batch, summed over all its requests.
MAX_EMBEDDING_INPUTS_PER_BATCH = 50_000
# OpenAI's limit for one part of a multipart (Uploads API) file upload.
MAX_UPLOAD_PART_BYTES = 64 * 1024 * 1024
# No model accepts a single request this large, and it caps the memory one line may take.
MAX_LINE_BYTES = 10 * 1024 * 1024
# Problems listed in a rejection report; all of them are counted.
MAX_LISTED_PROBLEMS = 100

# The deployment's caps on one whole file, unless its environment says otherwise.
DEFAULT_MAX_FILE_BYTES = 1024**3
DEFAULT_MAX_FILE_REQUESTS = 1_000_000


@dataclass(frozen=True, slots=True)
class Limits:
    """What one batch, one line and one whole file may hold.

    `max_file_bytes` and `max_file_requests` are None for no cap: validating by hand (the CLI,
    a benchmark) caps nothing unless asked; the functions always pass the deployment's caps."""

    max_requests: int = MAX_REQUESTS_PER_BATCH
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_upload_part_bytes: int = MAX_UPLOAD_PART_BYTES
    max_line_bytes: int = MAX_LINE_BYTES
    max_listed_problems: int = MAX_LISTED_PROBLEMS
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS_PER_BATCH
    max_file_bytes: int | None = None
    max_file_requests: int | None = None

    def __post_init__(self) -> None:
        # The longest acceptable line, normalised, must fit in one chunk, or no plan exists.
        smallest_chunk = min(self.max_upload_part_bytes, self.max_batch_bytes)
        if self.max_requests < 1 or self.max_line_bytes + 1 > smallest_chunk:
            raise ValueError(
                "need max_requests >= 1 and max_line_bytes + 1 <= "
                "min(max_upload_part_bytes, max_batch_bytes)"
            )


# OpenAI's limits, and no cap on the whole file.
DEFAULT_LIMITS = Limits()
