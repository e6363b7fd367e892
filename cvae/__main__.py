"""`python -m cvae` is the `cvae` command."""

import sys

from cvae.cli import main

sys.exit(main())
