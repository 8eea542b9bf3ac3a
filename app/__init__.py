"""slotsync: Argonaut Scheduling Use Case 3 application server.

Importing this package must stay cheap and free of web/database imports so that
workers, the CLI and the pure rules engine can use `app.core.domain` and
`app.settings` without pulling in FastAPI.
"""

import sys

# httpx imports its command-line client (and with it rich, click and pygments, all
# installed here) whenever it is imported: +8.7 MB in every API and worker process,
# for a CLI no slotsync process runs (encode/httpx#3547 moves it to ``__main__``).
# A None entry makes that one import fail, which httpx answers with a stub ``main``.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
