"""Pure domain core: no Airflow, pymongo or boto3 imports anywhere below this package."""
