"""How the ingress reaches model versions (transport.py): the short path to a same-node Triton
(endpoints.py, triton_grpc.py), the Serve-handle fallback, paced micro-batching
(microbatch.py), and one failure type end to end (failure.py)."""
