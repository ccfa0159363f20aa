"""`distilserve rollout canary|bluegreen|ab|shadow|status|promote|rollback|pause|resume|abort|
promote-winner|timeline`: drive rollouts through the admin API of a running server."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import yaml

from distilserve.cli.admin import CliError, add_common, request

COMMANDS = ("promote", "rollback", "pause", "resume", "abort", "promote-winner")
_TERMINAL = ("promoted", "rolled_back", "aborted")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollout", help="canary, blue-green, A/B and shadow rollouts")
    rsub = p.add_subparsers(dest="rollout_command", required=True, metavar="WHAT")

    c = _start_parser(rsub, "canary", "shift traffic in steps, gated on errors, p99 and accuracy")
    c.add_argument("--steps", default=None, help="candidate percent per step, e.g. 1,5,25,50,100")
    c.add_argument("--interval", type=float, default=None, help="seconds per analysis window")
    c.add_argument("--max-step", type=float, default=None,
                   help="seconds a step may wait for enough requests/labels before rolling back (default 3600)")
    c.add_argument("--max-failures", type=int, default=None)
    c.add_argument("--max-inconclusive", type=int, default=None, help="windows in a row with no metrics at all")
    _gate_flags(c)

    b = _start_parser(rsub, "bluegreen", "smoke-test the idle colour, switch at once, keep the old one warm")
    b.add_argument("--rollback-window", type=float, default=None, help="seconds the old colour stays warm")
    b.add_argument("--smoke-timeout", type=float, default=None)
    b.add_argument("--smoke-input", action="append", default=None, help="smoke text (repeatable)")

    a = _start_parser(rsub, "ab", "sticky A/B test judged by an always-valid sequential test")
    a.add_argument("--salt", default=None, help="experiment salt (default: a fresh one)")
    a.add_argument("--percent", type=float, default=None, help="percent of users on the candidate")
    a.add_argument("--alpha", type=float, default=None)
    a.add_argument("--tau", type=float, default=None, help="expected effect size (prior std)")
    a.add_argument("--min-trials", type=int, default=None)
    a.add_argument("--max-duration", type=float, default=None)

    s = _start_parser(rsub, "shadow", "copy live traffic to the candidate; compare, never return")
    s.add_argument("--percent", type=float, default=None, help="percent of requests copied")
    s.add_argument("--min-samples", type=int, default=None)
    s.add_argument("--min-agreement", type=float, default=None)
    s.add_argument("--max-duration", type=float, default=None)
    s.add_argument("--then-canary", action="store_true", help="start a canary (defaults) when ready")
    _gate_flags(s)

    st = rsub.add_parser("status", help="traffic split, metrics per version, decision state, events")
    st.add_argument("--model", default="sentiment")
    st.add_argument("--json", action="store_true", help="print the raw JSON")
    add_common(st)
    st.set_defaults(func=_status)

    for name in COMMANDS:
        cp = rsub.add_parser(name, help=f"{name} the model's active rollout now")
        cp.add_argument("--model", default="sentiment")
        add_common(cp)
        cp.set_defaults(func=_command, command_name=name)

    t = rsub.add_parser("timeline", help="draw the traffic %% per version over the rollout as a PNG")
    t.add_argument("--model", default="sentiment")
    t.add_argument("--out", type=Path, required=True)
    add_common(t)
    t.set_defaults(func=_timeline)


def _start_parser(rsub: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    p = rsub.add_parser(name, help=help_text)
    p.add_argument("--model", default="sentiment")
    p.add_argument("--version", required=True, help="the candidate version")
    p.add_argument("--policy-file", type=Path, default=None, help="YAML/JSON policy; flags override it")
    p.add_argument("--ready-timeout", type=float, default=None, help="seconds for the candidate to deploy")
    p.add_argument("--wait", action="store_true", help="follow the events until the rollout ends")
    p.add_argument("--wait-timeout", type=float, default=24 * 3600.0)
    add_common(p)
    p.set_defaults(func=_start, strategy={"bluegreen": "blue_green"}.get(name, name))
    return p


def _gate_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("gates (default: derived from the candidate's and stable's cards)")
    # SUPPRESS: a flag not given is absent, so the card-derived value stands.
    g.add_argument("--min-requests", type=int, default=argparse.SUPPRESS)
    g.add_argument("--min-labels", type=int, default=argparse.SUPPRESS)
    g.add_argument("--max-error-rate-increase", type=float, default=argparse.SUPPRESS)
    g.add_argument("--max-p99-ratio", type=_float_or_none, default=argparse.SUPPRESS, help="number or 'none'")
    g.add_argument("--max-p99-ms", type=_float_or_none, default=argparse.SUPPRESS, help="number or 'none'")
    g.add_argument(
        "--max-accuracy-drop", type=_float_or_none, default=argparse.SUPPRESS,
        help="number or 'none' (turns the accuracy gate off: no feedback labels needed)",
    )


def _float_or_none(text: str) -> float | None:
    if text.lower() in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


_POLICY_FLAGS = {
    "canary": {"steps": "step_weights", "interval": "step_interval_s", "max_step": "max_step_s", "max_failures": "max_failures",
               "max_inconclusive": "max_inconclusive"},
    "blue_green": {"rollback_window": "rollback_window_s", "smoke_timeout": "smoke_timeout_s"},
    "ab": {"salt": "salt", "percent": "candidate_percent", "alpha": "alpha", "tau": "tau",
           "min_trials": "min_trials", "max_duration": "max_duration_s"},
    "shadow": {"percent": "sample_percent", "min_samples": "min_samples", "min_agreement": "min_agreement",
               "max_duration": "max_duration_s"},
}
_GATE_FLAGS = ("min_requests", "min_labels", "max_error_rate_increase", "max_p99_ratio", "max_p99_ms",
               "max_accuracy_drop")


def start_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /rollouts body from the flags (pure; unit-tested)."""
    policy: dict[str, Any] = {}
    if args.policy_file is not None:
        loaded = yaml.safe_load(args.policy_file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise CliError(f"--policy-file {args.policy_file}: expected a mapping, got {type(loaded).__name__}")
        policy.update(loaded)
    policy["strategy"] = args.strategy
    for flag, field in _POLICY_FLAGS[args.strategy].items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if flag == "steps":
            try:
                value = [float(x) for x in value.split(",") if x.strip()]
            except ValueError:
                raise CliError(f"--steps takes comma-separated percents like 1,5,25,50,100, got {value!r}") from None
        policy[field] = value
    body: dict[str, Any] = {"version": args.version, "policy": policy}
    overrides = {k: vars(args)[k] for k in _GATE_FLAGS if k in vars(args)}
    if overrides:
        body["gate_overrides"] = overrides
    if getattr(args, "smoke_input", None):
        body["smoke_inputs"] = args.smoke_input
    if getattr(args, "then_canary", False):
        body["then_canary"] = {}
    if args.ready_timeout is not None:
        body["ready_timeout_s"] = args.ready_timeout
    return body


def _start(args: argparse.Namespace) -> int:
    out = request(args, "POST", f"/admin/models/{args.model}/rollouts", start_body(args))
    rollout = out["rollout"]
    print(f"{args.model}: started {rollout['policy']['strategy']} {out['rollout_id']}: "
          f"{rollout['status']['stable_version']} -> {rollout['status']['candidate_version']}")
    gates = rollout["policy"].get("gates")
    if gates:
        print("gates: " + ", ".join(f"{k}={v}" for k, v in gates.items()))
    return _follow(args, out["rollout_id"]) if args.wait else 0


def _follow(args: argparse.Namespace, rollout_id: str, poll_s: float = 2.0) -> int:
    """Print the rollout's events as they come; 0 when promoted, 1 when rolled back or aborted."""
    seen: set[int] = set()
    deadline = time.monotonic() + args.wait_timeout
    while time.monotonic() < deadline:
        st = request(args, "GET", f"/admin/models/{args.model}/rollouts/status")
        for event in st["events"]:
            if event["id"] not in seen and event["rollout_id"] == rollout_id:
                seen.add(event["id"])
                print(format_event(event), flush=True)
        if st["rollout_id"] != rollout_id or not st["active"]:
            phase = (st.get("final") or {}).get("phase") if st["rollout_id"] == rollout_id else None
            # A shadow that passed hands over to its canary: follow that one too.
            if st["active"] and st["rollout_id"] != rollout_id:
                rollout_id = st["rollout_id"]
                continue
            print(f"{args.model}: rollout ended: {phase}; traffic {st['traffic']}")
            return 0 if phase == "promoted" else 1
        time.sleep(poll_s)
    raise CliError(f"rollout {rollout_id} still running after {args.wait_timeout:.0f} s")


def format_event(e: dict[str, Any]) -> str:
    when = dt.datetime.fromtimestamp(e["ts"]).strftime("%H:%M:%S")
    traffic = e["data"].get("traffic")
    split = "  [" + " ".join(f"v{v}={w:g}%" for v, w in sorted(traffic.items())) + "]" if traffic else ""
    return f"{when}  {e['kind']:<24} {e['message']}{split}"


def _command(args: argparse.Namespace) -> int:
    out = request(args, "POST", f"/admin/models/{args.model}/rollouts/{args.command_name}")
    status = out["rollout"]["status"]
    print(f"{args.model}: {args.command_name}: {out['action']['reason']} "
          f"(phase {status['phase']}, traffic {status['traffic']})")
    return 0


def _status(args: argparse.Namespace) -> int:
    st = request(args, "GET", f"/admin/models/{args.model}/rollouts/status")
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(render_status(st))
    return 0


def render_status(st: dict[str, Any]) -> str:
    """Human-readable `rollout status` (pure; unit-tested)."""
    lines = [f"model {st['model']}  traffic: " + "  ".join(f"v{v}={w:g}%" for v, w in sorted(st["traffic"].items()))]
    if st.get("shadow"):
        lines.append(f"shadow: v{st['shadow']['version']} gets a copy of {st['shadow']['share']:g}% of requests")
    doc = st.get("rollout")
    status = doc["status"] if doc else st.get("final")
    if st.get("rollout_id"):
        state = "active" if st["active"] else "finished"
        if status:
            lines.append(
                f"rollout {st['rollout_id']} ({status['strategy']}, {state}, phase {status['phase']}, "
                f"step {status['step']}): v{status['stable_version']} -> v{status['candidate_version']}"
            )
            lines.append(f"  {status['reason']}")
            evidence = status.get("evidence") or {}
            if evidence:  # what the current canary step has gathered so far, all its windows added up
                lines.append("  step evidence: " + "; ".join(
                    f"v{v} {e['requests']} req, {e['errors']} err, {e['labelled']} labels, p99 {_num(e['p99_ms'])} ms"
                    for v, e in sorted(evidence.items())))
    else:
        lines.append("no rollout yet")
    lines.append("")
    lines.append(f"{'version':>7} {'requests':>9} {'errors':>7} {'err %':>7} {'p99 ms':>8}   "
                 f"{'shadow n':>8} {'agree':>6} {'sh p99':>7}   last window: req err p99 labels acc")
    window = st.get("window") or {}
    for v in sorted(set(st["metrics"]) | set(window), key=lambda x: (len(x), x)):
        m = st["metrics"].get(v, {})
        w = window.get(v)
        wtxt = ""
        if w:
            acc = f"{w['correct'] / w['labelled']:.3f}" if w["labelled"] else "n/a"
            wtxt = f"{w['requests']} {w['errors']} {_num(w['p99_ms'])} {w['labelled']} {acc}"
        rate = m.get("error_rate")
        lines.append(
            f"{v:>7} {m.get('requests', 0):>9} {m.get('errors', 0):>7} "
            f"{'n/a' if rate is None else f'{100 * rate:.2f}':>7} {_num(m.get('p99_ms')):>8}   "
            f"{m.get('shadow_compared', 0):>8} {_num(m.get('shadow_agreement'), 3):>6} "
            f"{_num(m.get('shadow_p99_ms')):>7}   {wtxt}"
        )
    ab = status.get("ab") if status else None
    if ab:
        verdict = f"winner v{ab['winner']}" if ab["winner"] else "no winner yet"
        lines.append(
            f"\nA/B: {verdict}: rate v{ab['arm_b']} {_num(ab['rate_b'], 4)} vs v{ab['arm_a']} {_num(ab['rate_a'], 4)}, "
            f"effect {_num(ab['effect'], 4)}, {100 * (1 - ab['alpha']):.0f}% CI [{ab['ci_low']:.4f}, "
            f"{ab['ci_high']:.4f}], always-valid p={ab['p_value']:.4g}, trials {ab['trials_b']}/{ab['trials_a']}"
        )
    lines.append("\nevents:")
    lines += ["  " + format_event(e) for e in st["events"]] or ["  (none)"]
    return "\n".join(lines)


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _timeline(args: argparse.Namespace) -> int:
    from serving.control.timeline import draw_timeline

    st = request(args, "GET", f"/admin/models/{args.model}/rollouts/status")
    if not st["history"]:
        raise CliError(f"model {args.model!r} has no traffic history to draw")
    draw_timeline(st["history"], st["events"], args.out, title=f"{args.model} rollout {st['rollout_id'] or ''}")
    print(f"wrote {args.out}")
    return 0
