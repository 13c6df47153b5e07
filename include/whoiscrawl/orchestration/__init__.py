"""The Airflow edge: the DAG's tasks, the connections they use and the fleet providers.

The only part of the package that imports Airflow.
"""
