"""The booking service: hold, book, cancel and reschedule through the EHR, with the slot overlay.

Plain functions over a :class:`~app.booking.context.BookingContext`; no web imports,
so the API, the CLI and tests call the same code.
"""
