"""``python -m benchmarks [--quick]``: run every scenario and write benchmarks/RESULTS.md."""

import sys

from .run import main

sys.exit(main())
