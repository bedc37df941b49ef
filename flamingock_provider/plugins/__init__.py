"""The Airflow UI plugin of the provider: the Flamingock view (entry point ``airflow.plugins``)."""
