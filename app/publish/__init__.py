"""SMART Scheduling Links: availability published as a ``$bulk-publish`` feed.

:mod:`.offers` decides which slots are published (the offers ``$find`` makes),
:mod:`.resources` builds the FHIR R4 JSON, :mod:`.feed` refreshes the published
rows and serves the manifest and NDJSON files; :mod:`app.api.smart_publish` is the
HTTP surface and :mod:`app.cache.publish_queries` holds the SQL.
"""
