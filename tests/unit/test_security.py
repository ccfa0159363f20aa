"""Security properties that hold without a server: no pickle anywhere, constant-time admin
token checks that never log the token, names and versions that cannot leave the repository,
loopback listeners by default."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from serving import api_models
from serving.config import ServeConfig
from serving.triton import repo_view
from tests.helpers import REPO_ROOT

SCANNED = ("distill", "distilserve", "serving", "model_repository", "scripts", "loadtests")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
# Calls that unpickle, as (receiver, attribute).
PICKLE_CALLS = {("torch", "load"), ("torch.jit", "load"), ("pd", "read_pickle"), ("pandas", "read_pickle")}


def _sources() -> list[Path]:
    files = [p for d in SCANNED if (REPO_ROOT / d).is_dir() for p in (REPO_ROOT / d).rglob("*.py")]
    assert len(files) > 20, f"scan found only {len(files)} files: wrong root?"
    return files


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _pickle_uses(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver, attr = _dotted(node.func.value), node.func.attr
            if (receiver, attr) in PICKLE_CALLS:
                found.append(f"{receiver}.{attr}()")
            kw = {k.arg: k.value for k in node.keywords}
            if attr == "load" and isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value:
                found.append(f"{receiver}.load(allow_pickle=True)")
            # Model weights through transformers: safetensors only (tokenizers/configs are JSON/text).
            if attr == "from_pretrained" and not re.search(r"Tokenizer|Config", receiver):
                safe = kw.get("use_safetensors")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    found.append(f"{receiver}.from_pretrained() without use_safetensors=True")
    return found


# The one exception, where it is: model.py's load_graph deserialises a traced graph (TorchScript:
# code plus a restricted pickle, no weights) only after its bytes hashed to the card's
# graph_sha256, i.e. only the graph distill.graph wrote and checked (tests/unit/test_graph.py).
def _allowed(rel: Path, use: str) -> bool:
    return rel.parts[0] == "model_repository" and rel.name == "model.py" and use == "torch.jit.load()"


def test_no_pickle_loading_anywhere_in_the_code_base() -> None:
    offenders = {}
    for path in _sources():
        rel = path.relative_to(REPO_ROOT)
        uses = [u for u in _pickle_uses(ast.parse(path.read_text(), filename=str(path))) if not _allowed(rel, u)]
        if uses:
            offenders[str(rel)] = uses
    assert not offenders, f"weights must load from safetensors only, never pickle: {offenders}"


@pytest.mark.parametrize(
    "code",
    ["import pickle", "from joblib import load", "torch.load('w.pt')", "np.load('x.npy', allow_pickle=True)",
     "AutoModel.from_pretrained(path)", "AutoModel.from_pretrained(path, use_safetensors=False)"],
    ids=["import-pickle", "joblib", "torch-load", "np-allow-pickle", "from-pretrained-default", "safetensors-off"],
)
def test_the_scan_catches_each_pickle_path(code: str) -> None:
    assert _pickle_uses(ast.parse(code))  # a scan that finds nothing here could never fail


def test_the_scan_allows_safe_loading() -> None:
    code = ("AutoTokenizer.from_pretrained(p)\nAutoModelForSequenceClassification.from_pretrained(p, use_safetensors=True)\n"
            "safetensors.torch.load_file(p)")
    assert _pickle_uses(ast.parse(code)) == []


# ---- admin token ---------------------------------------------------------------------------
TOKEN = "s3cret-admin-token-value"


def _admin_check():  # noqa: ANN202 - (holder of the expected token, request) -> None, as require_admin does
    from serving.http.deps import check_bearer

    return lambda holder, request: check_bearer(holder._token, request.headers.get("authorization", ""))


def _request(header: str | None) -> SimpleNamespace:
    return SimpleNamespace(headers={"authorization": header} if header is not None else {})


def test_admin_check_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import serving.http.deps as ingress

    source = ast.parse(Path(ingress.__file__).read_text())
    fn = next(n for n in ast.walk(source) if isinstance(n, ast.FunctionDef) and n.name == "check_bearer")
    compares = [n for n in ast.walk(fn) if isinstance(n, ast.Compare) and "token" in ast.unparse(n).lower()
                and any(isinstance(op, ast.Eq | ast.NotEq) for op in n.ops)]
    assert not compares, f"token compared with ==/!=: {[ast.unparse(c) for c in compares]}"
    calls = []
    real = ingress.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(ingress.hmac, "compare_digest", spy)
    _admin_check()(SimpleNamespace(_token=TOKEN.encode()), _request(f"Bearer {TOKEN}"))
    assert calls == [(TOKEN.encode(), TOKEN.encode())]


@pytest.mark.parametrize(
    "header",
    [None, "", f"Basic {TOKEN}", "Bearer", "Bearer ", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x",
     f"Bearer  {TOKEN}", f"{TOKEN}", "Bearer \u00e9t\u00e9"],
    ids=["missing", "empty", "basic-scheme", "no-token", "blank-token", "prefix", "longer", "double-space",
         "no-scheme", "non-ascii"],
)
def test_admin_rejects_bad_credentials_without_echoing_or_logging_them(
    header: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    from serving.errors import ApiError

    caplog.set_level(logging.DEBUG)
    with pytest.raises(ApiError) as err:
        _admin_check()(SimpleNamespace(_token=TOKEN.encode()), _request(header))
    assert err.value.status == 401 and "authorization" in err.value.message
    assert TOKEN not in err.value.message and TOKEN[:8] not in caplog.text
    given = (header or "").partition(" ")[2].strip()
    assert len(given) < 4 or given not in err.value.message


def test_admin_accepts_the_token_case_insensitive_scheme(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    check = _admin_check()
    for scheme in ("Bearer", "bearer", "BEARER"):
        check(SimpleNamespace(_token=TOKEN.encode()), _request(f"{scheme} {TOKEN}"))
    assert TOKEN not in caplog.text


def test_admin_disabled_without_a_token() -> None:
    from serving.errors import ApiError

    with pytest.raises(ApiError) as err:
        _admin_check()(SimpleNamespace(_token=None), _request(f"Bearer {TOKEN}"))
    assert err.value.status == 403


def test_token_is_secret_in_config_and_kept_out_of_the_ingress_config(caplog: pytest.LogCaptureFixture) -> None:
    from serving.ingress import ingress_app

    cfg = ServeConfig(admin_token=TOKEN)
    for text in (str(cfg), repr(cfg), cfg.model_dump_json()):
        assert TOKEN not in text
    app = ingress_app(cfg)
    config_arg = app._bound_deployment.init_args[0]
    assert "admin_token" not in config_arg and TOKEN not in str(config_arg)


# ---- names and versions never reach outside the repository ------------------------------------
TRAVERSALS = ["../x", "..", ".", "1/../2", "/etc/passwd", "/abs", "a/b", "..\\x", "x\n", "~root", "", "%2e%2e",
              "sentiment/../../etc"]


@pytest.mark.parametrize("bad", TRAVERSALS, ids=[repr(b) for b in TRAVERSALS])
def test_make_view_refuses_traversal_in_model_and_version(bad: str, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "config.pbtxt").write_text('name: "m"\n')
    outside = tmp_path / "outside"
    (outside / "1").mkdir(parents=True)
    (outside / "config.pbtxt").write_text('name: "outside"\n')
    dest = tmp_path / "view"
    with pytest.raises((ValueError, FileNotFoundError)):
        repo_view.make_view(repo, bad, "1", dest)
    with pytest.raises((ValueError, FileNotFoundError)):
        repo_view.make_view(repo, "m", bad, dest)
    links = [p for p in dest.rglob("*") if p.is_symlink()] if dest.exists() else []
    assert links == []
    assert repo_view.make_view(repo, "m", "1", dest) == dest  # the legitimate view still works


@pytest.mark.parametrize("bad", TRAVERSALS, ids=[repr(b) for b in TRAVERSALS])
def test_api_patterns_refuse_traversal(bad: str) -> None:
    from serving.dataplane import check_name as _check_name
    from serving.errors import ApiError

    for pattern, field in ((api_models.MODEL_PATTERN, "model"), (api_models.VERSION_PATTERN, "version")):
        with pytest.raises(ApiError) as err:
            _check_name(bad, pattern, field)
        assert err.value.status == 400 and err.value.message.startswith(f"{field}:")
    with pytest.raises(ValueError):
        api_models.PredictRequest.model_validate({"model": bad, "inputs": ["x"]})
    with pytest.raises(ValueError):
        api_models.PredictRequest.model_validate({"inputs": ["x"], "version": bad})
    with pytest.raises(ValueError):
        repo_view.patch_config('name: "m"\n', bad)


# ---- listeners --------------------------------------------------------------------------------
def test_listeners_default_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.triton import server

    assert ServeConfig().host == "127.0.0.1"
    monkeypatch.setattr(server, "backend_directory", lambda binary: Path("/backends"))
    srv = server.TritonServer.__new__(server.TritonServer)
    srv.binary, srv.model_repository, srv.log_verbose = Path("/bin/tritonserver"), Path("/repo"), 0
    args = srv._args(server.Ports(1, 2, 3))
    for kind in ("http", "grpc", "metrics"):
        assert f"--{kind}-address=127.0.0.1" in args
    assert "--allow-sagemaker=false" in args and "--allow-vertex-ai=false" in args
