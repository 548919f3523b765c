"""``python -m sentiment_devcluster up`` (``sentiment_devcluster.cluster``) or ``traffic``
(``sentiment_devcluster.traffic``)."""

import sys

from sentiment_devcluster import cluster, traffic

if sys.argv[1:2] == ["traffic"]:
    sys.exit(traffic.main(sys.argv[2:]))
sys.exit(cluster.main())
