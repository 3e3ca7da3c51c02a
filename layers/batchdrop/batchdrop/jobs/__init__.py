"""The use cases: submitting a dropped file (and its early upload), launching a batch exactly
once, polling (token-limit resubmission, the duplicate sweep, resuming stalled submissions,
each job's turn at finishing), finishing a job, and the outbox that sends each email once.
They decide; the domain computes; the world is reached only through the Protocols of `ports`,
which `runtime` fills with adapters. They may import the domain, `ports`, `records` and
`errors`; never `adapters/`, `settings` or `runtime`, nor boto3, botocore or requests.
"""
