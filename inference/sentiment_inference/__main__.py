"""``python -m sentiment_inference``: the same as ``sentiment-serve``."""

import sys

from sentiment_inference.cli import main

sys.exit(main())
