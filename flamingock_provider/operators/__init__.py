"""Airflow operators of the Flamingock provider: thin tasks over the one engine."""
