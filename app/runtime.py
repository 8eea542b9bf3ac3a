"""Composition root: builds engine, EHR client, Redis, coordinator, dispatcher and the
API's services from settings. The API, the workers and the CLI ask it; they build
nothing themselves.

Shared things (engines, the pooled EHR client, Redis) are created lazily and cached
per process; after a fork (Celery prefork children) :func:`reset_after_fork` drops
what must not be shared. A dispatcher is made per owner, who shuts it down.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from pathlib import Path

import httpx
import redis
from celery import Celery
from sqlalchemy import Engine

from app.availability.answer_memo import AnswerMemo
from app.availability.catalog import CatalogCache, catalog_reader, read_catalog
from app.availability.finder import Finder
from app.availability.patients import PatientLookup
from app.availability.service import MAX_SLOT_LENGTH
from app.availability.slot_index import SlotIndex
from app.booking.context import BookingContext
from app.cache.db import Session, make_engine
from app.core.recent import Recent
from app.ehr.auth import BearerAuth, SmartBackendAuth
from app.ehr.client import EhrClient
from app.ehr.gateway import EhrGateway
from app.ehr.transport import RetryPolicy
from app.fhir.versions import FhirVersion
from app.observability.metrics import offer_memo_full
from app.publish.feed import Sources as FeedSources
from app.publish.service import Publisher, options_from
from app.settings import Settings, get_settings
from app.sync.broker import BrokerDispatcher, producer
from app.sync.capabilities import current_booking_path
from app.sync.context import SyncContext
from app.sync.coordination import Coordinator, LocalCoordinator, RedisCoordinator
from app.sync.dispatch import Dispatcher
from app.sync.refresh import refresh_windows
from rules.appointment_id import signer
from rules.loader import RulesStore
from rules.offer_memo import OfferMemo
from rules.schema import RulesFile

_engines: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def get_engine(settings: Settings | None = None) -> Engine:
    return engine_for((settings or get_settings()).effective_database_url)


def ehr_auth(settings: Settings) -> httpx.Auth | None:
    if settings.ehr_auth == "bearer":
        if settings.ehr_bearer_token is None:
            raise ValueError("SLOTSYNC_EHR_AUTH=bearer needs SLOTSYNC_EHR_BEARER_TOKEN")
        return BearerAuth(settings.ehr_bearer_token.get_secret_value())
    if settings.ehr_auth == "smart":
        key = settings.ehr_private_key.get_secret_value() if settings.ehr_private_key else None
        if key is None and settings.ehr_private_key_path is not None:
            key = Path(settings.ehr_private_key_path).read_text()
        if not (settings.ehr_client_id and settings.ehr_token_url and key):
            raise ValueError(
                "SLOTSYNC_EHR_AUTH=smart needs EHR_CLIENT_ID, EHR_TOKEN_URL and EHR_PRIVATE_KEY"
                " (or EHR_PRIVATE_KEY_PATH)"
            )
        return SmartBackendAuth(
            client_id=settings.ehr_client_id,
            token_url=settings.ehr_token_url,
            private_key=key,
            key_id=settings.ehr_key_id,
            algorithm=settings.ehr_jwt_alg,
            scope=settings.ehr_scope,
        )
    return None


def ehr_client(
    settings: Settings | None = None, *, stop: threading.Event | None = None
) -> EhrClient:
    """A new client (the caller closes it); workers use :func:`shared_ehr_client`."""
    settings = settings or get_settings()
    return EhrClient(
        settings.ehr_base_url,
        fhir_version=settings.ehr_fhir_version,
        timeout=settings.ehr_timeout_seconds,
        retry=RetryPolicy(attempts=settings.ehr_retry_attempts),
        auth=ehr_auth(settings),
        page_size=settings.ehr_page_size,
        prefetch_method=settings.ehr_prefetch_method,
        stop=stop,
    )


# Per settings object (kept alive alongside, so its id cannot be reused).
_clients: dict[int, tuple[Settings, EhrClient]] = {}


def shared_ehr_client(settings: Settings | None = None) -> EhrClient:
    """One pooled keep-alive client per process (and per configuration)."""
    settings = settings or get_settings()
    if id(settings) not in _clients:
        _clients[id(settings)] = (settings, ehr_client(settings))
    return _clients[id(settings)][1]


@lru_cache(maxsize=4)
def broker_producer(url: str) -> Celery:
    """One sending connection pool per process and broker."""
    return producer(url)


@lru_cache(maxsize=4)
def redis_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10, health_check_interval=30)


_local_coordinator = LocalCoordinator()


def coordinator(settings: Settings | None = None) -> Coordinator:
    settings = settings or get_settings()
    if settings.effective_redis_url:
        return RedisCoordinator(redis_for(settings.effective_redis_url))
    return _local_coordinator


def sync_context(settings: Settings | None = None) -> SyncContext:
    settings = settings or get_settings()
    return SyncContext(
        engine=get_engine(settings),
        client=shared_ehr_client(settings),
        coord=coordinator(settings),
        settings=settings,
    )


def dispatcher(settings: Settings | None = None, *, periodic: bool = False) -> Dispatcher:
    """A new dispatcher (the caller shuts it down): Celery with a broker, else a thread pool.

    The embedded pool gets an EHR client of its own, so that stopping its retries at
    shutdown leaves the shared client to everyone else. With ``periodic`` (the one
    process of embedded mode that serves the API) it also runs the periodic sync work
    that beat runs for the workers.
    """
    settings = settings or get_settings()
    if settings.embedded:
        from app.sync.local import LocalDispatcher

        stop = threading.Event()
        ctx = replace(sync_context(settings), client=ehr_client(settings, stop=stop))
        local = LocalDispatcher(ctx, stop=stop)
        if periodic:
            local.start_periodic()
        return local
    return BrokerDispatcher(broker_producer(settings.effective_redis_url))


@dataclass
class ApiServices:
    """What one API process serves with: ``app.state`` holds exactly these."""

    settings: Settings
    engine: Engine
    fhir_version: FhirVersion
    rules_store: RulesStore
    finder: Finder
    answers: AnswerMemo | None  # rendered $find answers (None: not kept)
    booking: BookingContext
    coordinator: Coordinator
    dispatcher: Dispatcher
    ehr_client: EhrClient
    publisher: Publisher

    def close(self) -> None:
        self.dispatcher.shutdown()
        self.ehr_client.close()


def api_services(settings: Settings) -> ApiServices:
    """Everything the API needs, built once per process (its lifespan calls this). The
    dispatcher also runs embedded mode's periodic sync work (beat's, with a broker)."""
    engine = get_engine(settings)
    rules_store = RulesStore(settings.effective_rules_path)
    client = ehr_client(settings)

    def current_rules() -> RulesFile:
        rules_store.reload_if_changed()
        return rules_store.current

    gateway = EhrGateway(
        client,
        # the EHR's capabilities are (re)read by the sync: follow them as they come
        booking=Recent(partial(current_booking_path, engine, settings), ttl=30.0),
    )
    finder = Finder(
        settings=settings,
        rules_store=rules_store,
        catalog=CatalogCache(read_fresh=catalog_reader(engine)),
        slot_index=SlotIndex(lookback=MAX_SLOT_LENGTH),
        offer_memo=OfferMemo(settings.offer_memo_max_offers, on_full=offer_memo_full),
        sign=signer(settings.proposal_secret.get_secret_value().encode()),
        patients=PatientLookup(
            partial(gateway.read_patient, timeout=settings.patient_read_timeout_seconds),
            ttl=settings.patient_cache_seconds,
        ),
    )
    booking = BookingContext(
        engine=engine,
        gateway=gateway,
        rules=current_rules,
        settings=settings,
        refresh=partial(refresh_windows, sync_context(settings)),
    )

    def feed_sources(session: Session) -> FeedSources:
        # the catalog as the database has it: a refresh files what it read under the
        # generation it read
        return FeedSources(
            rules=current_rules(),
            catalog=read_catalog(session),
            slot_index=finder.slot_index,
            memo=finder.offer_memo,
            sign=finder.sign,
        )

    return ApiServices(
        settings=settings,
        engine=engine,
        fhir_version=client.version,
        rules_store=rules_store,
        finder=finder,
        answers=AnswerMemo(settings.find_answer_memo_bytes)
        if settings.find_answer_memo_bytes
        else None,
        booking=booking,
        coordinator=coordinator(settings),
        dispatcher=dispatcher(settings, periodic=True),
        ehr_client=client,
        publisher=Publisher(engine, feed_sources, current_rules, options_from(settings)),
    )


def reset_after_fork() -> None:
    """In a forked child: never reuse the parent's sockets (database, EHR, Redis)."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _clients.clear()
    redis_for.cache_clear()
    broker_producer.cache_clear()
