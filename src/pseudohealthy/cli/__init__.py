"""Command-line interface: thin commands over the package's functions."""
