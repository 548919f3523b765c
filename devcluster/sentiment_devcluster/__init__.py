"""An embedded single-machine Kubernetes for `make demo` and the end-to-end tests (never shipped in an image).

- ``apiserver``: the test API server (kmock's KubernetesEmulator taught kube-apiserver's write semantics),
  with what kubectl needs;
- ``nodeagent``: a kubelet and Deployment controller in the spirit of kwok that really runs the containers
  of our image and Redis as local processes, probes them and reports status;
- ``proxy``: one loopback address per Service, forwarding to the Ready endpoints only;
- ``cluster``: the runner (``python -m sentiment_devcluster``) that starts all of it plus the real operator.
"""
