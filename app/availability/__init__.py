"""All of ``$find``: request parsing, the in-process slot index and catalog, warm-up,
staleness and paging policy, and the calls into the composer."""
