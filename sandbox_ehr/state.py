"""The whole mutable state of one sandbox, reachable as ``app.state.sandbox``."""

from __future__ import annotations

import time

from sandbox_ehr.capability import capability_statement
from sandbox_ehr.config import SandboxConfig
from sandbox_ehr.faults import Faults
from sandbox_ehr.fhir_render import Renderer
from sandbox_ehr.notify import Notifier
from sandbox_ehr.records import Records
from sandbox_ehr.stats import Stats
from sandbox_ehr.store import SlotStore
from sandbox_ehr.timefmt import now_instant

SOFTWARE_VERSION = "0.1.0"


class Sandbox:
    """Config + slot store + renderer + records (appointments, patients, coverage) + counters."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.store = SlotStore(config.seed, config.size, config.start_date, config.horizon_days)
        self.renderer = Renderer(self.store.org, config.fhir_version, int(time.time() * 1000))
        self.records = Records(self)
        self.faults = Faults()
        self.notifier = Notifier(self)
        self.base_url = f"http://{config.host}:{config.port}/fhir"
        self.capability = capability_statement(
            config.fhir_version, SOFTWARE_VERSION, now_instant(), plain=config.plain
        )

    @property
    def stu3(self) -> bool:
        return self.config.fhir_version == "stu3"

    @property
    def plain(self) -> bool:
        return self.config.plain

    def reset(self) -> int:
        """Back to the seed: slots, appointments, patients, coverage, faults and counters.

        Subscriptions stay; every schedule whose slots differed from the seed is
        notified. Returns the number of such schedules.
        """
        self.records.clear()
        self.faults.clear()
        self.stats.clear()
        changed = self.store.reset()
        self.renderer = Renderer(self.store.org, self.config.fhir_version, int(time.time() * 1000))
        return len(changed)
