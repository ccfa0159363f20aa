"""serving.rollout.sticky: a user's version depends only on (user, salt, weights)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from serving.rollout.sticky import assign, bucket

USERS = [f"user-{i}" for i in range(10_000)]
SALT = "exp-1"
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("user", "point", "version"),
    [
        # Golden values: changing the hash would silently move every live user to another arm.
        # 0.7847 >= 0.5 of the 50/50 split -> the second version in sorted order, '2'.
        pytest.param("user-1", 0.7847342603047024, "2", id="user-1"),
        pytest.param("alice", 0.774060374275141, "2", id="alice"),
        # 0.1152 < 0.5 -> '1'.
        pytest.param("7", 0.11521561583347563, "1", id="7"),
        pytest.param("user-3", 0.43460727287578027, "1", id="user-3"),
    ],
)
def test_golden_assignments(user: str, point: float, version: str) -> None:
    assert bucket(user, SALT) == point
    assert assign(user, SALT, {"1": 50, "2": 50}) == version


def test_repeated_calls_never_flip() -> None:
    weights = {"1": 90.0, "2": 10.0}
    first = [assign(u, SALT, weights) for u in USERS]
    assert [assign(u, SALT, weights) for u in USERS] == first
    # Insertion order of the weights is not part of the key.
    assert [assign(u, SALT, {"2": 10.0, "1": 90.0}) for u in USERS] == first


def test_assignment_is_the_same_in_another_process_with_another_hash_seed() -> None:
    # Python's hash() of a str changes with PYTHONHASHSEED; sha256 must not.
    code = (
        "import json, sys; from serving.rollout.sticky import assign; "
        "users = [f'user-{i}' for i in range(10_000)]; "
        "json.dump([assign(u, 'exp-1', {'1': 90.0, '2': 10.0}) for u in users], sys.stdout)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout) == [assign(u, SALT, {"1": 90.0, "2": 10.0}) for u in USERS]


# 10,000 users: a share p has sd sqrt(p (1 - p) / 10,000) <= 0.005, so +-0.015 is >= 3 sd.
SPLIT_TOLERANCE = 0.015


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        pytest.param({"1": 50, "2": 50}, {"1": 0.5, "2": 0.5}, id="50-50"),
        pytest.param({"1": 90, "2": 10}, {"1": 0.9, "2": 0.1}, id="90-10"),
        pytest.param({"a": 20, "b": 30, "c": 50}, {"a": 0.2, "b": 0.3, "c": 0.5}, id="three-arms"),
        # Not percents: 1 : 3 normalises to 0.25 : 0.75.
        pytest.param({"1": 1, "2": 3}, {"1": 0.25, "2": 0.75}, id="unnormalised"),
        # A 0 weight gets nobody.
        pytest.param({"1": 0, "2": 100}, {"1": 0.0, "2": 1.0}, id="zero-weight"),
    ],
)
def test_split_matches_weights(weights: dict[str, float], expected: dict[str, float]) -> None:
    got = [assign(u, SALT, weights) for u in USERS]
    for version, share in expected.items():
        assert abs(got.count(version) / len(USERS) - share) <= SPLIT_TOLERANCE, (version, got.count(version))


def test_normalisation_means_scaled_weights_assign_identically() -> None:
    assert [assign(u, SALT, {"1": 1, "2": 1}) for u in USERS] == [
        assign(u, SALT, {"1": 50, "2": 50}) for u in USERS
    ]


def test_changing_weights_moves_only_users_across_the_moved_boundary() -> None:
    before = [assign(u, SALT, {"1": 90, "2": 10}) for u in USERS]
    after = [assign(u, SALT, {"1": 75, "2": 25}) for u in USERS]
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    # Users already on '2' stay; only '1' users in [0.75, 0.90) move: 15 % of users, +- tolerance.
    assert all(pair == ("1", "2") for pair in moved)
    assert abs(len(moved) / len(USERS) - 0.15) <= SPLIT_TOLERANCE


def test_a_new_salt_reshuffles_users() -> None:
    weights = {"1": 50, "2": 50}
    same = sum(assign(u, "exp-1", weights) == assign(u, "exp-2", weights) for u in USERS)
    # Independent 50/50 hashes agree for half the users; a salt that were ignored would give 100 %.
    assert abs(same / len(USERS) - 0.5) <= SPLIT_TOLERANCE


@pytest.mark.parametrize(
    ("weights", "quoted"),
    [
        pytest.param({}, "at least one version", id="empty"),
        pytest.param({"1": -5, "2": 105}, "{'1': -5}", id="negative"),
        pytest.param({"1": float("nan")}, "{'1': nan}", id="nan"),
        pytest.param({"1": 0, "2": 0}, "must not all be 0, got {'1': 0, '2': 0}", id="all-zero"),
    ],
)
def test_bad_weights_are_rejected_with_the_values(weights: dict[str, float], quoted: str) -> None:
    with pytest.raises(ValueError, match=re.escape(quoted)):
        assign("user-1", SALT, weights)
