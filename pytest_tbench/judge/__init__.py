"""The regression gate: every item of a run against the same item of a saved baseline, beyond noise."""
