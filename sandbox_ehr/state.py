"""The whole mutable state of one sandbox, reachable as ``app.state.sandbox``.

The composition root of the sandbox: it builds the store, renderer, appointment
book, patient records, faults and notifier and hands each only the collaborators
it needs, so none of them imports this module.
"""

from __future__ import annotations

import time
from typing import Any

from sandbox_ehr.appointments import AppointmentBook
from sandbox_ehr.capability import capability_statement
from sandbox_ehr.config import SandboxConfig
from sandbox_ehr.errors import not_found
from sandbox_ehr.faults import Faults
from sandbox_ehr.fhir_render import Renderer
from sandbox_ehr.notify import Notifier
from sandbox_ehr.patients import PatientRecords
from sandbox_ehr.stats import Stats
from sandbox_ehr.store import Change, SlotStore
from sandbox_ehr.timefmt import now_instant

SOFTWARE_VERSION = "0.1.0"


class Sandbox:
    """Config + slot store + renderer + appointments + patients and coverage + counters."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.store = SlotStore(config.seed, config.size, config.start_date, config.horizon_days)
        self.renderer = Renderer(self.store.org, config.fhir_version, int(time.time() * 1000))
        self.patient_records = PatientRecords(config)
        self.appointments = AppointmentBook(config, self.store, self.patient_records)
        self.faults = Faults()
        self.base_url = f"http://{config.host}:{config.port}/fhir"
        self.notifier = Notifier(
            config, self.store, self.faults, self.stats, self._stripped_schedule, self.base_url
        )
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
        self.appointments.clear()
        self.patient_records.clear()
        self.faults.clear()
        self.stats.clear()
        changed = self.store.reset()
        self.renderer = Renderer(self.store.org, self.config.fhir_version, int(time.time() * 1000))
        return len(changed)

    def _stripped_schedule(self, change: Change) -> dict[str, Any]:
        # The renderer is rebuilt on reset, so it is looked up at every call.
        schedule = self.store.org.schedules[change.schedule]
        return self.renderer.stripped_schedule(schedule, change.start, change.end)

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        """A resource clients wrote: Appointment, Patient, Coverage or Subscription."""
        if rtype == "Appointment" and rid in self.appointments.by_id:
            return self.appointments.by_id[rid].resource
        if rtype == "Patient" and rid in self.patient_records.patients:
            return self.patient_records.patients[rid]
        if rtype == "Coverage" and rid in self.patient_records.coverages:
            return self.patient_records.coverages[rid]
        subscription = self.notifier.subscriptions.get(rid)
        if rtype == "Subscription" and subscription is not None:
            return subscription.resource()
        raise not_found(f"{rtype}/{rid}")
