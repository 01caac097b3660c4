"""`python -m jaxattr explain ...` is the same as the `jaxattr` command."""

import sys

from jaxattr.cli import main

sys.exit(main())
