"""``python -m safetext_core``: the SafeText command line."""
import sys

from .cli import main

sys.exit(main())
