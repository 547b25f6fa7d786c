# coord-server and coordctl in a slim image, run as an unprivileged user.
#
#   docker build -t coord .
#   docker run --rm -p 7379:7379 coord          # a one-member cluster
#   docker compose -f deploy/compose.yaml up    # three members (docs/operations.md)
#
# Every member listens on 7379 inside its container (clients and peers share the port);
# its data lives in the volume /var/lib/coord. The health check asks the member itself
# through grpc.health.v1 only (`coordctl endpoint health`, no token needed with auth on):
# healthy while it is a member of its cluster and knows a leader.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 coord \
 && useradd --system --uid 10001 --gid coord --home-dir /var/lib/coord --shell /usr/sbin/nologin coord \
 && mkdir -p /var/lib/coord \
 && chown coord:coord /var/lib/coord

# Only what the wheel needs: the generated stubs and the two packages (no tests, no venv).
WORKDIR /tmp/coord-src
COPY pyproject.toml README.md MANIFEST.in ./
COPY protos ./protos
COPY tools/protogen.py ./tools/protogen.py
COPY coord ./coord
COPY coord_server ./coord_server
COPY coord_client ./coord_client
COPY coord_common ./coord_common
RUN pip install '.[server]' \
 && cd / \
 && rm -rf /tmp/coord-src

USER coord:coord
WORKDIR /var/lib/coord
VOLUME ["/var/lib/coord"]
EXPOSE 7379

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["coordctl", "--endpoints", "127.0.0.1:7379", "--command-timeout", "3", "endpoint", "health"]

ENTRYPOINT ["coord-server"]
CMD ["--name", "default", "--listen", "0.0.0.0:7379", "--advertise", "127.0.0.1:7379", "--data-dir", "/var/lib/coord/data"]
