"""The command line: thin shells over library functions (parse, call, render)."""
