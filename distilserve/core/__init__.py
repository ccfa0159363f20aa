"""The shared core: what `serving/`, `distill/`, `loadtests/` and the CLI all import.

It imports nothing of distilserve's own and nothing heavy (no torch, Ray, FastAPI): the
card schema (`card`), model and version names (`names`), the tensor names of the model
contract (`tensors`) and the one percentile definition (`stats`).
"""
