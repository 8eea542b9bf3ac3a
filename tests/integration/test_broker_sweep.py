"""Redelivery of a dead worker's messages is not held back by what that worker left."""

from __future__ import annotations

from kombu.transport.redis import Mutex

from app.settings import Settings
from benchmarks.databases import throwaway_redis_db
from workers.celery_app import make_celery


def test_the_sweep_mutex_of_a_worker_killed_mid_sweep_expires_within_seconds():
    with throwaway_redis_db() as url:
        settings = Settings(
            redis_url=url, broker_visibility_timeout_seconds=10, task_time_limit_seconds=9
        )
        app = make_celery(settings)
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            sweep = Mutex(channel.client, channel.unacked_mutex_key, channel.unacked_mutex_expire)
            sweep.__enter__()  # a worker inside its sweep of unacked messages, then SIGKILLed
            left_behind = channel.client.pttl(channel.unacked_mutex_key)
        app.close()
    # every sweep by the other workers is skipped until then: seconds, not minutes
    assert 0 < left_behind <= 6_000
