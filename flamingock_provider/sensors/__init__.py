"""Airflow sensors of the Flamingock provider."""
