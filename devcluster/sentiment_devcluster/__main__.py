"""``python -m sentiment_devcluster up``: see ``sentiment_devcluster.cluster``."""

import sys

from sentiment_devcluster.cluster import main

sys.exit(main())
