"""distilserve: serve, distill and roll out models (Ray Serve + Triton).

`distilserve.core` is the shared bottom layer that `distill/`, `serving/` and the CLI all
import (card schema, names, tensor names, percentile); `distilserve.cli` is the top layer,
imported by nothing. This file imports neither.
"""

__version__ = "0.1.0"
