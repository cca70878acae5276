"""Jobs and their event log: models, state changes, reads, leases (the app labelled ``copilot``)."""
