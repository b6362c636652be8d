"""`python -m hpim_ir` is the `hpim` command."""

import sys

from hpim_ir.cli import main

sys.exit(main())
