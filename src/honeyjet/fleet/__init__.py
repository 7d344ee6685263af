"""Fleets: the collector (ingest API + sensor tokens) in front of a central database.

The sensor side of the link is :mod:`honeyjet.store.forwarder`.
"""
