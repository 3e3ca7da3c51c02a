"""`python -m batchdrop.cli`: the `batchdrop` command without its installed script."""

import sys

from batchdrop.cli.commands import main

sys.exit(main())
