"""What kube-apiserver does to a write, as pure functions over JSON objects, for the test API server.

kmock's KubernetesEmulator stores plain JSON and merges every patch like RFC 7386. These modules hold the
rules a real API server applies instead, each citing the document or upstream source it reproduces; the
emulator (tests/operator/operator_emulator.py) calls them, and tests/emulator/ tests them against those
documents:

- ``schema``: which lists are maps (by which keys) or sets, per kind, as the Go types and CRD schemas declare;
- ``patch``: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch;
- ``apply``: server-side apply with field managers, ``managedFields``, conflicts and ``force``;
- ``defaults``: omitempty dropping and the defaults the API server sets on the kinds the operator renders;
- ``structural``: pruning and defaulting of custom resources by their CRD's structural schema;
- ``selectors``: label and field selectors on list and watch.
"""
