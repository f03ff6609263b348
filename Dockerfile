# esm as a daemon: `esm run /etc/esm/esm.yaml`, Lambda's API (and /health, /metrics) on 3001.
#
#   docker build -t esm .
#   docker run -v "$PWD/esm.yaml:/etc/esm/esm.yaml:ro" -p 127.0.0.1:3001:3001 esm
#
# The config must say `Settings: {ApiHost: 0.0.0.0}`: the default, 127.0.0.1, cannot be reached
# from outside the container. Whoever reaches the port can call every operation: publish it on
# the host's loopback, as above, or set Settings.ApiAuth first (README: "Authentication"). Keep ApiPort at 3001, where the HEALTHCHECK asks. AWS endpoints,
# region and credentials come from the environment (AWS_ENDPOINT_URL, AWS_REGION, …).

# -- build: a virtualenv with esm and its dependencies ------------------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/esm
WORKDIR /src
# Dependencies first, from pyproject.toml alone: editing the code does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/esm/bin/pip install --no-cache-dir -r requirements.txt
COPY README.md ./
# esm/connectors and esm/destinations are links to the two folders beside it (one import root)
COPY esm ./esm
COPY connectors ./connectors
COPY destinations ./destinations
RUN /opt/esm/bin/pip install --no-cache-dir --no-deps .

# -- run: the virtualenv only, as a user without privileges --------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/esm/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/esm /opt/esm
RUN groupadd --system --gid 10001 esm \
 && useradd --system --uid 10001 --gid esm --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin esm \
 && mkdir -p /etc/esm
USER 10001:10001
WORKDIR /etc/esm
EXPOSE 3001
# No curl in the slim image: Python asks /health (readiness: 200 while Redis answers and every
# mapping and the async worker run, 503 with the reasons otherwise; urlopen raises on both 503 and
# a refused connection). An orchestrator that restarts what it finds dead should probe
# /health/live instead (200 while the daemon answers): restarting esm does not bring Redis back.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3001/health', timeout=4)"]
# esm handles SIGTERM (docker stop): stop polling, let in-flight batches finish within
# Settings.ShutdownTimeoutSeconds, exit.
ENTRYPOINT ["esm"]
CMD ["run", "/etc/esm/esm.yaml"]
