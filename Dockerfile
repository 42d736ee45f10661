# One image for every histfill service (consumer, producer, simulator, init); compose picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY shared ./shared
COPY producer ./producer
COPY consumer ./consumer
COPY histfill ./histfill
COPY simulators ./simulators
COPY verify ./verify
COPY archive ./archive
# editable: the codec finds schemas/ next to the packages, as in a checkout
RUN pip install -e . && useradd --system --uid 10001 histfill
USER histfill
CMD ["histfill", "--help"]
