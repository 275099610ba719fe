"""partnerflow's Airflow DAGs: one ingest DAG per configured feed, plus deadlines and the Board pack.

Everything is built by the installed ``partnerflow`` package from ``config/partnership.yaml``; see
``partnerflow.airflow.dags``. (Airflow's safe mode only parses files that mention "airflow" and "dag".)
"""

from partnerflow.airflow.dags import build_all

globals().update(build_all())
