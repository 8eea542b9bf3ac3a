"""Talking to the EHR: reads (client) and, later, writes (gateway)."""
