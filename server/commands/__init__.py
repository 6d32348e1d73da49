"""The command line: one module per command (its flags and its run), and what they print for people."""
