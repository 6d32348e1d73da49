"""Commands for people: eval, stats, doctor and output formatting."""
