# Production image: gunicorn serving the JSON-RPC API, /metrics and /health/*; configure with
# deploy.cfg (mount it and set KB_DEPLOYMENT_CONFIG) and EE2_* environment variables.
# deploy/docker-compose.yml runs it with MongoDB and an HTCondor schedd.
# The build context has no .git: hand the commit in, for `status` to report it:
#   docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t execution_engine2 .
# (`make image` does this). Without it, `status` reports "unknown".
FROM python:3.11-slim
ARG GIT_COMMIT=

WORKDIR /kb/module
COPY pyproject.toml setup.py README.md ./
COPY execution_engine2 ./execution_engine2
COPY lib ./lib
COPY deploy ./deploy
RUN EE2_GIT_COMMIT="${GIT_COMMIT}" pip install --no-cache-dir .

# The service runs as its own user; /var/lib/ee2 is its data directory (standalone tokens
# and work directories, HTCondor credential files), a volume in docker-compose.yml.
RUN useradd --system --create-home --home-dir /var/lib/ee2 --shell /usr/sbin/nologin ee2 \
    && chmod 0700 /var/lib/ee2
ENV KB_DEPLOYMENT_CONFIG=/kb/module/deploy/deploy.cfg \
    EE2_DATA_DIR=/var/lib/ee2 \
    PYTHONUNBUFFERED=1
USER ee2

EXPOSE 5000
# Ready = MongoDB and the schedd answer (GET /health/ready, 503 otherwise).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health/ready', timeout=8)"]
CMD ["ee2", "serve", "--config", "/kb/module/deploy/deploy.cfg"]
