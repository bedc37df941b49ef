"""Airflow hooks of the Flamingock provider."""
