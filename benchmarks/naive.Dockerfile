# The baseline benchmarks/docker_build.py measures docker/Dockerfile against: the one-stage Dockerfile a
# project starts with. Same base image (the python stand-in), the source copied before an unpinned install,
# so any source edit reinstalls every dependency.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
# The official image ships pip; the stand-in's Debian Python gets it from a venv, in a layer of its own.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY . .
# The proxy's CA bundle reaches pip the way it reaches uv in docker/Dockerfile: a secret, in no layer.
# --no-cache-dir keeps pip's download cache out of the layer, so sizes compare layouts, not a cache.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi && \
    pip install --no-cache-dir "torch>=2.0.0" torchvision numpy pillow tqdm matplotlib scikit-learn modal
ENV PYTHONPATH=/app/src
CMD ["python", "-m", "tandem", "train", "dit"]
