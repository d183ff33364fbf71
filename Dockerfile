# Production image: gunicorn serving the JSON-RPC app; configure with deploy.cfg
# (mount it and set KB_DEPLOYMENT_CONFIG) and EE2_* environment variables.
FROM python:3.11-slim

WORKDIR /kb/module
COPY pyproject.toml setup.py README.md ./
COPY execution_engine2 ./execution_engine2
COPY lib ./lib
COPY deploy ./deploy
RUN pip install --no-cache-dir .

ENV KB_DEPLOYMENT_CONFIG=/kb/module/deploy/deploy.cfg
EXPOSE 5000
CMD ["ee2", "serve", "--config", "/kb/module/deploy/deploy.cfg"]
