"""The prediction cache's Redis option against a real redis-server (tests/services.py).

Two cache clients stand for ingress replicas on different nodes sharing one Redis; when Redis
goes away, lookups answer "not cached" at once (the ingress then predicts with the model) and
come back by themselves once Redis does.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from serving.batch import shards as sh
from serving.batch.cache import RedisPredictionCache, load_from, open_cache, prediction
from tests.services import RedisServer, redis_server  # noqa: F401 - pytest fixture
from tests.unit.test_batch_cache import NAMES, _write_job


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:  # noqa: F811 - the fixture, used by name
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()  # each test starts from an empty cache
    client.close()
    return redis_server.url


def test_two_replicas_share_entries(redis_url: str, tmp_path: Path) -> None:
    node_a, node_b = open_cache(redis_url), open_cache(redis_url)
    assert isinstance(node_a, RedisPredictionCache) and isinstance(node_b, RedisPredictionCache)
    texts = ["a", "b", "c", "d", "e"]
    _write_job(tmp_path, texts, done={0: 2, 2: 1})  # shard 1 (c, d) unfinished
    assert load_from(node_a, tmp_path) == ("sentiment", "3", 3)  # `batch load-cache` on one node
    got = node_b.lookup_many("sentiment", "3", texts)  # served by a replica on another node
    assert [g is not None for g in got] == [True, True, False, False, True]
    assert got[0] == {"label": "neutral", "scores": {"negative": 0.25, "neutral": 0.5, "positive": 0.25}}
    assert node_b.lookup_many("sentiment", "2", ["a"]) == [None]  # another version never answers
    newer = prediction("positive", NAMES, [0, 0, 1])
    node_b.put_many("sentiment", "3", [(sh.input_key("a"), newer)])
    assert node_a.lookup_many("sentiment", "3", ["a"]) == [newer]  # a replacement is seen by both
    assert node_a.count("sentiment", "3") == 3 and node_a.count() == 3
    for c in (node_a, node_b):
        c.close()


def test_entries_expire_with_a_ttl(redis_url: str) -> None:
    cache = RedisPredictionCache(redis_url, ttl_s=1)
    cache.put_many("m", "1", [(sh.input_key("x"), prediction("neutral", NAMES, [0, 1, 0]))])
    assert cache.lookup_many("m", "1", ["x"]) != [None]
    ttl = cache.client.ttl(cache._key("m", "1", sh.input_key("x")))
    assert 0 < ttl <= 1  # Redis drops it; no sleep needed to see that it will
    cache.close()


def test_redis_down_falls_back_then_recovers(redis_server: RedisServer) -> None:  # noqa: F811
    pred = prediction("negative", NAMES, [1, 0, 0])
    cache = RedisPredictionCache(redis_server.url, retry_s=0.5)
    cache.put_many("m", "1", [(sh.input_key("x"), pred)])
    assert cache.lookup_many("m", "1", ["x"]) == [pred]
    redis_server.stop()
    try:
        assert cache.lookup_many("m", "1", ["x", "y"]) == [None, None]  # a miss, never an error
        assert not cache.breaker.allows(time.monotonic())  # later lookups skip Redis for retry_s
        assert cache.lookup_many("m", "1", ["x"]) == [None]
        with pytest.raises(Exception, match="(?i)connect"):  # a load fails loudly
            cache.put_many("m", "1", [(sh.input_key("x"), pred)])
    finally:
        redis_server.start()  # same port, empty (no persistence)
    cache.breaker.succeeded()  # rather than waiting out retry_s
    cache.put_many("m", "1", [(sh.input_key("x"), pred)])
    assert cache.lookup_many("m", "1", ["x"]) == [pred]  # the same client reconnected
    cache.close()
