"""State: budget ledger, usage totals, decision log."""
