# One image for every Airflow component of the compose file and for the registry simulator.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /opt/whoiscrawl/requirements.txt
RUN pip install --no-cache-dir -r /opt/whoiscrawl/requirements.txt
COPY --chown=airflow:0 pyproject.toml /opt/whoiscrawl/
COPY --chown=airflow:0 include /opt/whoiscrawl/include
RUN pip install --no-cache-dir --no-deps -e /opt/whoiscrawl
