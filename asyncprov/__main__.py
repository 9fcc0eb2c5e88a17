"""``python -m asyncprov``: the command line."""

from .cli import main

raise SystemExit(main())
