"""Least privilege, proven sufficient: every AWS call a function makes in the integration suite is
recorded (through botocore's event hooks) and held to the role template.yaml gives that function.

moto does not enforce IAM, so without this a call the role does not allow would pass every test
and fail on the first real deploy. Modules, from the bottom up:
- `policy`: IAM's evaluation of identity-policy statements (wildcards, Deny, conditions);
- `permissions`: which IAM actions on which ARNs one API call needs;
- `encryption`: the KMS permissions a service uses on the caller's behalf (derived, not seen);
- `roles`: a function's role policies, read from the transformed template and resolved;
- `recorder`: the botocore hooks, which tell each call to the function whose code made it;
- `audit`: each test's check, and the run's ledger of grants no call used.

It may import `local` (the stand-ins) and botocore, never the batchdrop layer.
"""
