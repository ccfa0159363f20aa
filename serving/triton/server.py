"""The real `tritonserver` process: find it, lay out its backends, start, load, stop.

Listeners bind 127.0.0.1 on free ports. The server dies with its owner even on kill -9:
the child asks the kernel for SIGKILL when its parent thread dies (PR_SET_PDEATHSIG), and
it is forked from a launcher thread that lives as long as the owning process. Its
Python-backend stubs die with it too: a small watchdog (serving/triton/reaper.py) kills the
server's process group once the owner is gone, for stubs that would not notice on their own,
and removes the shared-memory regions the group left in /dev/shm.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from serving.triton import reaper
from serving.triton.reaper import group_shm_regions, unlink_regions

NGC_BINARY = Path("/opt/tritonserver/bin/tritonserver")
NGC_BACKENDS = Path("/opt/tritonserver/backends")
_PR_SET_PDEATHSIG = 1

# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so every server is
# forked from this one long-lived thread rather than from whatever thread asked.
_LAUNCHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triton-launcher")

_log = logging.getLogger(__name__)


class _Reaper:
    """This process's one watchdog (serving/triton/reaper.py): told which server groups are live,
    it kills them when this process dies. Started on the first server; restarted if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipe = None
        self._groups: set[int] = set()

    def _start(self) -> None:
        first = subprocess.Popen(  # noqa: S603 - our own script, by path
            [sys.executable, "-I", "-S", str(Path(__file__).with_name("reaper.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
        )
        first.wait()  # it forks the watchdog and exits; the watchdog keeps the pipe's read end
        self._pipe = first.stdin
        for pgid in self._groups:  # a restarted watchdog learns what the dead one knew
            self._write(f"add {pgid}\n")

    def _write(self, line: str) -> None:
        assert self._pipe is not None
        self._pipe.write(line.encode())
        self._pipe.flush()

    def _send(self, op: str, pgid: int) -> None:
        with self._lock:
            self._groups = reaper.apply(f"{op} {pgid}", self._groups)  # the watchdog's own rule
            if op == "del" and self._pipe is None:
                return  # nothing to tell: a watchdog started later learns only the live groups
            for attempt in (1, 2):
                try:
                    if self._pipe is None:
                        self._start()
                    else:
                        self._write(f"{op} {pgid}\n")
                    return
                except (OSError, ValueError) as e:  # the watchdog died: start a new one once
                    with contextlib.suppress(OSError, ValueError):
                        self._pipe.close()
                    self._pipe = None
                    if attempt == 2:
                        _log.warning("no watchdog for tritonserver stubs (%s); they may outlive a killed owner", e)

    def add(self, pgid: int) -> None:
        self._send("add", pgid)

    def remove(self, pgid: int) -> None:
        self._send("del", pgid)


_REAPER = _Reaper()


class TritonError(RuntimeError):
    """The Triton process failed to start, load or answer; the message carries its log tail."""


def _pytriton_root() -> Path | None:
    try:
        import importlib.util

        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "tritonserver"


def find_binary() -> Path:
    """$TRITONSERVER_BIN, then the NGC image's binary, then the one in the nvidia-pytriton wheel."""
    env = os.environ.get("TRITONSERVER_BIN")
    if env:
        if not Path(env).is_file():
            raise TritonError(f"TRITONSERVER_BIN={env!r} is not a file")
        return Path(env)
    if NGC_BINARY.is_file():
        return NGC_BINARY
    root = _pytriton_root()
    if root and (root / "bin" / "tritonserver").is_file():
        return root / "bin" / "tritonserver"
    raise TritonError(
        "no tritonserver binary: set TRITONSERVER_BIN, use NVIDIA's Triton image, or pip install nvidia-pytriton==0.7.0"
    )


def backend_directory(binary: Path, cache: Path | None = None) -> Path:
    """A backends folder with `python/` for this interpreter's version.

    The NGC image ships one; the pytriton wheel ships the backend and one stub per Python
    version side by side, so we lay out `python/` = backend files + the matching stub.
    """
    if binary == NGC_BINARY and NGC_BACKENDS.is_dir():
        return NGC_BACKENDS
    root = binary.parent.parent
    wheel_backend = root / "backends" / "python"
    stub = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonError(f"no Python-backend stub for Python {sys.version_info[:2]} at {stub}")
    base = cache or Path(tempfile.gettempdir()) / f"distilserve-triton-backends-{os.getuid()}"
    target = base / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in [*wheel_backend.iterdir(), stub]:
        if src.name == "__pycache__":
            continue
        link = target / src.name
        if not link.exists():
            try:
                link.symlink_to(src)
            except FileExistsError:  # another replica laid it out at the same moment
                pass
    return base


def server_env(binary: Path) -> dict[str, str]:
    """Environment for the server and its Python stubs.

    The stub finds packages through the first `python3` on PATH (PYTHONPATH alone was not
    enough), and it links libpython by name: the running interpreter's own library folder
    must come first or the loader picks the system's older 3.11 and transformers' imports break.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    libs = [sysconfig.get_config_var("LIBDIR") or ""]
    wheel_libs = binary.parent.parent.parent.parent / "nvidia_pytriton.libs"
    if wheel_libs.is_dir():
        libs.append(str(wheel_libs))
    env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in [*libs, env.get("LD_LIBRARY_PATH", "")] if p])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()  # Ctrl-C in the owner's terminal is the owner's to handle, not Triton's


@dataclass
class Ports:
    http: int
    grpc: int
    metrics: int


class TritonServer:
    """One `tritonserver` in explicit model-control mode over `model_repository`."""

    def __init__(self, model_repository: Path, *, log_dir: Path | None = None, log_verbose: int = 0) -> None:
        self.model_repository = Path(model_repository)
        self.binary = find_binary()
        self._log_dir = Path(log_dir or tempfile.mkdtemp(prefix="distilserve-triton-"))
        self.log_path = self._log_dir / "tritonserver.log"
        self.log_verbose = log_verbose
        self.ports: Ports | None = None
        self.proc: subprocess.Popen | None = None
        # Regions the group mapped, noted after each load: a group killed from outside is gone before
        # `stop` could look for them. (A server killed alone: its stubs remove theirs, model.py; an
        # owner killed: its watchdog does, reaper.py.)
        self._regions: set[str] = set()

    # -- addresses ---------------------------------------------------------------
    @property
    def http_url(self) -> str:
        assert self.ports, "server not started"
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        assert self.ports, "server not started"
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        assert self.ports, "server not started"
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    # -- lifecycle ---------------------------------------------------------------
    def _args(self, ports: Ports) -> list[str]:
        return [
            str(self.binary),
            f"--model-repository={self.model_repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={backend_directory(self.binary)}",
            "--http-address=127.0.0.1",
            f"--http-port={ports.http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={ports.grpc}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={ports.metrics}",
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
            "--exit-on-error=true",
            # Our config.pbtxt files are complete. With auto-complete on, the Python backend
            # starts a throwaway stub per load only to ask model.py for a config (1.3 s of a
            # replica's start here, measured), before the stub that serves.
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            f"--log-verbose={self.log_verbose}",
        ]

    def start(self, timeout: float = 120.0, attempts: int = 3) -> TritonServer:
        """Start and wait until the server is ready; retries when a chosen port was taken."""
        for attempt in range(attempts):
            self.ports = Ports(free_port(), free_port(), free_port())
            log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
            try:
                self.proc = _LAUNCHER.submit(
                    subprocess.Popen,
                    self._args(self.ports),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=server_env(self.binary),
                    preexec_fn=_die_with_parent,
                ).result()
            finally:
                log.close()
            _REAPER.add(self.proc.pid)  # setsid: its pid is its process group, shared by its stubs
            try:
                self._wait_ready(timeout)
                return self
            except TritonError:
                self.stop()
                if attempt + 1 == attempts or "address already in use" not in self.log_tail().lower():
                    raise
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise TritonError(f"tritonserver exited with code {code} while starting; log tail:\n{self.log_tail()}")
            if self._get("/v2/health/ready") == 200:
                return
            time.sleep(0.1)
        raise TritonError(f"tritonserver not ready after {timeout:.0f}s; log tail:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self._get("/v2/health/live") == 200

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` s (0: at once); then the whole process group, so no
        Python-backend stub outlives it; then the shared-memory regions the group had mapped, which a
        killed server leaves in /dev/shm (1 MB or more each; a graceful exit removes its own): those
        it maps now, and those noted while it ran, for a server that was killed before this stop."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        regions, self._regions = self._regions | group_shm_regions(proc.pid), set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        # The server runs in its own session (setsid), so its pid is its process group: the
        # stubs it forked are in it too and were seen to linger when the server died first.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _REAPER.remove(proc.pid)
        unlink_regions(regions)  # one a dying stub still maps goes with the stub

    def __enter__(self) -> TritonServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- model control -----------------------------------------------------------
    def load(self, model: str, timeout: float = 300.0) -> None:
        """Load (or reload) `model` from the repository; raises TritonError with the reason."""
        status, body = self._post(f"/v2/repository/models/{model}/load", {}, timeout)
        if status != 200:
            raise TritonError(f"loading model {model!r} failed: {_message(body)}\nlog tail:\n{self.log_tail(20)}")
        if self.proc is not None:
            self._regions |= group_shm_regions(self.proc.pid)

    def unload(self, model: str, timeout: float = 60.0) -> None:
        status, body = self._post(f"/v2/repository/models/{model}/unload", {}, timeout)
        if status != 200:
            raise TritonError(f"unloading model {model!r} failed: {_message(body)}")

    def model_ready(self, model: str, version: str | None = None) -> bool:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/ready"
        return self._get(path) == 200

    def metrics_text(self, timeout: float = 2.0) -> str:
        """Triton's Prometheus page ('' when it cannot be read)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=timeout) as r:
                return r.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    # -- tiny HTTP helpers (stdlib: this runs before any event loop exists) --------
    def _get(self, path: str, timeout: float = 2.0) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=timeout) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (OSError, ValueError):
            return 0

    def _post(self, path: str, payload: dict, timeout: float) -> tuple[int, bytes]:
        req = urllib.request.Request(
            f"http://{self.http_url}{path}", data=json.dumps(payload).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            return 0, str(e).encode()


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", body.decode(errors="replace")))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")

