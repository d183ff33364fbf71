# Production image: gunicorn serving the JSON-RPC app; configure with deploy.cfg
# (mount it and set KB_DEPLOYMENT_CONFIG) and EE2_* environment variables.
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

ENV KB_DEPLOYMENT_CONFIG=/kb/module/deploy/deploy.cfg
EXPOSE 5000
CMD ["ee2", "serve", "--config", "/kb/module/deploy/deploy.cfg"]
