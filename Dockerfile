# One image for the web and the workers (deploy/compose.yaml). Not built on the machine this
# repository is developed on (no container daemon there): see README "Deploying with containers".
#
#   docker build -t refundsite .                      # PyTorch's CPU wheels (the default)
#   docker build --build-arg TORCH=cuda -t refundsite:cuda .   # PyTorch's CUDA build from PyPI
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH=cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
# The CPU wheels come from PyTorch's own index (torch==2.14.1 is then satisfied by 2.14.1+cpu)
# and the CUDA libraries pinned in requirements.txt are left out.
RUN python -m venv .venv \
 && .venv/bin/pip install --no-cache-dir --upgrade pip \
 && if [ "$TORCH" = "cpu" ]; then \
      .venv/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        torch==2.14.1 torchvision==0.29.1 \
      && grep -Ev '^(nvidia-|cuda-|triton==)' requirements.txt > requirements-image.txt; \
    elif [ "$TORCH" = "cuda" ]; then cp requirements.txt requirements-image.txt; \
    else echo "TORCH must be cpu or cuda, got $TORCH" >&2; exit 1; fi \
 && .venv/bin/pip install --no-cache-dir -r requirements-image.txt

FROM ${PYTHON_IMAGE}
# No compiler in this stage: only the virtual environment built above and the code.
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home refundsite \
 && mkdir -p /srv/var /srv/media /srv/inbox \
 && chown refundsite:refundsite /srv/var /srv/media /srv/inbox
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY . /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VAR_DIR=/srv/var \
    MEDIA_ROOT=/srv/media \
    INBOX_DIR=/srv/inbox \
    BIND=0.0.0.0 \
    PORT=8000
# Static files are collected into the image (served by WhiteNoise); a throw-away key for this step only.
RUN SECRET_KEY=collectstatic-only ALLOWED_HOSTS=localhost .venv/bin/python manage.py collectstatic --noinput -v 0
USER refundsite
EXPOSE 8000 8001
CMD ["bin/web"]
