"""Triggers of the Flamingock provider (they ship in the package: the triggerer loads no DAG bundle)."""
