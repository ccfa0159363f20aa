"""distilserve: serve, distill and roll out models (Ray Serve + Triton).

This top-level package holds what both `distill/` and `serving/` need and neither may
import from the other: the model card schema and the command line.
"""

__version__ = "0.1.0"
