"""Schedules: when things fire (triggers, pure) and, later, what fires them."""
