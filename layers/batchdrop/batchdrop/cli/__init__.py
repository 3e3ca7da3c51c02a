"""The user's `batchdrop` command: a client of a deployed (or local) stack, run on a laptop.

It validates a file with the functions' own domain code before uploading it, and reads and
updates jobs through the functions' own store. It may import `domain` and `adapters`, never
`jobs` or `runtime`; only `stack_client` speaks to AWS through boto3 and botocore. The Lambda
functions never import it: it rides in the layer only because it shares the layer's code.
`batchdrop local up` imports the local stack (`local/`, a development checkout's) lazily.
"""
