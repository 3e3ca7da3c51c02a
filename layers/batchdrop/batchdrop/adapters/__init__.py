"""The adapters: batchdrop's way to the world, each playing a port of `ports`. S3
(`s3_objects`, `s3_multipart`), DynamoDB (`job_store`), OpenAI over requests (`openai_api`),
SNS (`sns`), Secrets Manager (`secrets`), and the boto3 clients they share (`aws_clients`).
They alone may import boto3, botocore and requests. They may import `ports`, `records` and
`errors`; never the use cases, the domain, `settings` or `runtime`: what they share with those
lives in the ports and records.
"""
