"""The domain: batchdrop's rules, pure and without I/O. The model's words and where outputs go,
reading lines, validation and the split plan, approving bytes for an early upload, the fates of
requests and merging results back in input order, and the emails' text. It may import itself,
`ports` (the notice and stream shapes it builds and writes to), `records` and `errors`; never
the use cases, the adapters, `settings` or `runtime`, nor boto3, botocore or requests.
"""
