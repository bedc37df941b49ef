"""The ``flamingock`` command line: argparse wiring over :mod:`flamingock_provider.commands`."""
