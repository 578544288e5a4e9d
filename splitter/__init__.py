"""Dataset ingestion, versions, seeded splits, variants, simulators and exports. A notebook-friendly library."""
