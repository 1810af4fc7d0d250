# One image for the API, the Dask scheduler and the Dask workers (see docker-compose.yml).
# The same installation steps as `make venv`: the CPU build of torch first, then the project.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RELOBLUR_DATA_DIR=/data

RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# CPU torch (no multi-GB CUDA packages); a GPU image would take the CUDA build instead.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY core core
COPY hardware_sim hardware_sim
COPY acquisition acquisition
COPY postprocess postprocess
COPY deblur deblur
COPY api api
COPY migrations migrations
COPY configs configs
RUN pip install .

VOLUME ["/data"]
EXPOSE 8000
CMD ["reloblur", "serve", "--host", "0.0.0.0", "--port", "8000"]
