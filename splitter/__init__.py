"""Dataset ingestion, versions, seeded splits, variants, simulators and exports.

A library an organizer can also use from a notebook: it imports no web, database or queue code.
"""
