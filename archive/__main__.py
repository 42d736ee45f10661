"""``python -m archive``."""

import sys

from archive.main import main

sys.exit(main())
