"""``python -m sentiment_operator`` is ``sentiment-operator``."""

import sys

from .cli import main

sys.exit(main())
