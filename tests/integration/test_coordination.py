"""Schedule locks and refresh coalescing, on a real Redis and in process.

(fakeredis has no Lua, which redis-py's Lock needs.)"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from app.sync.coordination import LocalCoordinator, RedisCoordinator, ScheduleBusy, lock_names


@pytest.fixture(params=["redis", "local"])
def coord(request):
    if request.param == "redis":
        return RedisCoordinator(redis.Redis.from_url(request.getfixturevalue("redis_url")))
    return LocalCoordinator()


def test_claim_is_won_once_until_released_or_expired(coord):
    assert coord.claim("pending:a", ttl=60)
    assert not coord.claim("pending:a", ttl=60)
    assert coord.claim("pending:b", ttl=60)
    coord.release("pending:a")
    assert coord.claim("pending:a", ttl=0.05)
    time.sleep(0.1)
    assert coord.claim("pending:a", ttl=60)


def test_a_claim_carries_the_latest_stamp_to_whoever_takes_it(coord):
    assert coord.claim("pending:s", ttl=60, stamp=100.0)
    assert not coord.claim("pending:s", ttl=60, stamp=105.5)  # coalesced: heard later
    assert coord.take("pending:s") == 105.5
    assert coord.take("pending:s") is None  # taken: gone
    assert coord.claim("pending:s", ttl=60, stamp=110.0)  # a new change queues anew
    assert not coord.claim("pending:s", ttl=60)  # coalesced, heard at an unknown time
    assert coord.take("pending:s") is None  # so nothing may count as having read it
    assert coord.claim("pending:s", ttl=0.05, stamp=120.0)
    time.sleep(0.1)
    assert coord.take("pending:s") is None  # expired


def test_a_held_schedule_makes_others_wait_then_give_up(coord):
    names = lock_names(["sch-1"])
    with coord.hold(names, ttl=5, wait=1):
        with pytest.raises(ScheduleBusy), coord.hold(names, ttl=5, wait=0.1):
            pass
        with coord.hold(lock_names(["sch-2"]), ttl=5, wait=0.1):
            pass  # other schedules are free
    with coord.hold(names, ttl=5, wait=0.1):
        pass  # released on exit


def test_waiter_gets_the_lock_when_released(coord):
    names = lock_names(["sch-1"])
    order: list[str] = []
    entered = threading.Event()

    def first() -> None:
        with coord.hold(names, ttl=5, wait=1):
            entered.set()
            time.sleep(0.2)
            order.append("first")

    thread = threading.Thread(target=first)
    thread.start()
    entered.wait(2)
    with coord.hold(names, ttl=5, wait=2):
        order.append("second")
    thread.join()
    assert order == ["first", "second"]


def test_redis_lock_expires_so_a_dead_holder_cannot_block_forever(redis_url):
    coord = RedisCoordinator(redis.Redis.from_url(redis_url))
    stuck = coord.redis.lock("slotsync:lock:schedule:sch-1", timeout=0.2)
    assert stuck.acquire(blocking=False)  # a worker that died holding it
    with coord.hold(lock_names(["sch-1"]), ttl=5, wait=1):
        pass


def test_multi_locks_release_what_they_took_when_one_is_busy(redis_url):
    coord = RedisCoordinator(redis.Redis.from_url(redis_url))
    with coord.hold(lock_names(["sch-2"]), ttl=5, wait=0):
        busy = coord.hold(lock_names(["sch-1", "sch-2"]), ttl=5, wait=0.05)
        with pytest.raises(ScheduleBusy), busy:
            pass
        with coord.hold(lock_names(["sch-1"]), ttl=5, wait=0):
            pass  # sch-1 was given back
