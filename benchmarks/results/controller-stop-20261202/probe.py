"""Time serve.delete(controller app) while an ingress long-polls it, then the other apps' deletion.

Run from the repository root: .venv/bin/python benchmarks/results/controller-stop-20261202/probe.py
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import httpx  # noqa: E402
import ray  # noqa: E402
from ray import serve  # noqa: E402

from distilserve.core.names import CONTROLLER_APP  # noqa: E402
from serving import raycompat  # noqa: E402
from serving.config import AutoscalingSettings, ServeConfig  # noqa: E402
from serving.stack import start_stack  # noqa: E402
from tests.helpers import build_tiny_repo, free_port, wait_for  # noqa: E402

work = Path(tempfile.mkdtemp())
repo = build_tiny_repo(work / "repo", versions=1)
ray.init(num_cpus=2, include_dashboard=False)
cfg = ServeConfig(port=free_port(), model_repository=repo, registry=work / "r.db", models=["sentiment"],
                  torch_threads=1, replica_cpus=0.1, autoscaling=AutoscalingSettings(min_replicas=1, max_replicas=1))
start_stack(cfg, reconcile_s=0.5)
url = f"http://127.0.0.1:{cfg.port}"
wait_for(lambda: httpx.get(f"{url}/v2/models/sentiment/ready", timeout=5).status_code == 200, 300, "ready")
time.sleep(5)
t = time.monotonic()
serve.delete(CONTROLLER_APP)
t_ctl = time.monotonic() - t
names = set(serve.status().applications)
t = time.monotonic()
for n in names:
    raycompat.delete_app_nowait(n)
wait_for(lambda: not names & set(serve.status().applications), 120, "gone")
t_rest = time.monotonic() - t
print(f"RESULT controller_delete_s={t_ctl:.2f} rest_delete_s={t_rest:.2f} apps={sorted(names)}")
serve.shutdown()
ray.shutdown()
