"""Every exit status a ``slotsync`` command returns; its help and the README list them.

Monitoring and cron act on them: keep them stable. (``sandbox-ehr``, ``worker`` and
``beat`` may also exit with uvicorn's or Celery's own.) No imports, so ``--help`` reads
them without loading the database or HTTP stacks.
"""

OK_EXIT = 0
FAILED_EXIT = 1
USAGE_EXIT = 2
DEPENDENCY_EXIT = 3
INTERRUPTED_EXIT = 130
EXIT_CODES = {
    OK_EXIT: "done (status commands: sync is ok)",
    FAILED_EXIT: "the command ran and failed: a sync run failed, a rules file is invalid,"
    " a file was not written (status commands: degraded, serving but the cache may differ"
    " from the EHR)",
    USAGE_EXIT: "bad arguments or settings (status commands: down)",
    DEPENDENCY_EXIT: "a dependency (database, Redis, the EHR) is unreachable or not prepared:"
    " no schema yet (run `slotsync db upgrade`), an empty cache, a port in use",
    INTERRUPTED_EXIT: "interrupted (Ctrl-C)",
}
