"""The runner: leases jobs and drives each to its end against the Agent Generator."""
