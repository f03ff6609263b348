"""Destinations for on-failure / on-success records and dead-letter queues."""
