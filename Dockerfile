# syntax=docker/dockerfile:1
# partnerflow's Airflow image: the official Airflow image (same Airflow and Python as uv.lock), plus
# partnerflow's locked dependencies, the package, and the partnership's DAGs, config, contracts and SQL.
# Built by `docker compose build`; see "Deploying" in README.md.
#
# Pitfalls:
#   - The base image's tag must follow apache-airflow in uv.lock (tests/unit/test_deployment.py checks).
#   - partnerflow is installed editable from /opt/partnerflow on purpose: it finds config/, sql/ and
#     expectations/ next to its source (partnerflow.paths.REPO_ROOT), as in a checkout.
#   - The Celery and FAB providers the compose file uses are locked in uv.lock like every other package.
FROM apache/airflow:3.3.2-python3.11

# uv.lock, exported with hashes by the uv the Makefile pins, then installed hash-checked. Packages the
# image already has at the locked version are kept; pip changes the others to the locked versions.
# --no-dev leaves out the dev group, and with it partnerflow-dev (dev/: the embedded stack, the demo and
# the synthetic returns); uv needs dev/pyproject.toml only to read the workspace, not to install it.
RUN --mount=from=ghcr.io/astral-sh/uv:0.13.8,source=/uv,target=/tmp/uv/bin/uv \
    --mount=type=bind,source=pyproject.toml,target=/tmp/uv/project/pyproject.toml \
    --mount=type=bind,source=uv.lock,target=/tmp/uv/project/uv.lock \
    --mount=type=bind,source=dev/pyproject.toml,target=/tmp/uv/project/dev/pyproject.toml \
    /tmp/uv/bin/uv export --project /tmp/uv/project --frozen --no-dev --no-emit-project --no-cache \
        --format requirements-txt --output-file /tmp/requirements.txt \
    && pip install --no-cache-dir --require-hashes -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Code and configuration belong to root and are read-only to the airflow user; the var folder (a volume)
# and the log folder are group 0 writable, as the image expects for an arbitrary AIRFLOW_UID.
USER root
COPY pyproject.toml README.md /opt/partnerflow/
COPY plugins/ /opt/partnerflow/plugins/
COPY dags/ /opt/partnerflow/dags/
COPY config/ /opt/partnerflow/config/
COPY expectations/ /opt/partnerflow/expectations/
COPY sql/ /opt/partnerflow/sql/
RUN chmod -R a+rX,go-w /opt/partnerflow \
    && mkdir -p /opt/partnerflow/var /opt/airflow/logs \
    && chown airflow:0 /opt/partnerflow/var /opt/airflow/logs \
    && chmod 775 /opt/partnerflow/var /opt/airflow/logs \
    && python -m compileall -q /opt/partnerflow/plugins /opt/partnerflow/dags
USER airflow

RUN pip install --no-cache-dir --no-deps -e /opt/partnerflow

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/partnerflow/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=false \
    PARTNERFLOW_VAR=/opt/partnerflow/var \
    TZ=UTC
