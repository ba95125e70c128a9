"""The ``corps`` command: every subcommand lives here, and nothing below imports this package."""
