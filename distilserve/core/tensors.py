"""Tensor names of the text-classification contract shared by model.py, codec and clients.

`model_repository/<model>/config.pbtxt` declares the same names; model.py (inside Triton's
stub, which may not import distilserve) reads them from its model config instead.
"""

INPUT_TEXT = "TEXT"
"""BYTES [N] or [N,1]: the texts to classify."""
OUTPUT_PROBABILITIES = "PROBABILITIES"
"""FP32 [N,C]: class probabilities in the card's label order."""
OUTPUT_LABEL = "LABEL"
"""BYTES [N,1]: the most likely class name."""
OUTPUT_NAMES = (OUTPUT_PROBABILITIES, OUTPUT_LABEL)
