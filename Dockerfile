# honeyjet: network-printer honeypot, as a container image.
#
#   docker build -t honeyjet .
#   docker run -d --name honeyjet --read-only --tmpfs /tmp:size=256m \
#     --cap-drop ALL --security-opt no-new-privileges \
#     --sysctl net.ipv4.ip_unprivileged_port_start=0 \
#     -v honeyjet-data:/data -v "$PWD/config:/config:ro" \
#     -p 9100:9100 -p 80:80 -p 631:631 -p 515:515 -p 161:161/udp -p 631:631/udp honeyjet
#
# The sensor runs as uid/gid 10001 with no capabilities and listens on the standard
# ports inside its own network namespace: the sysctl above makes every port bindable
# there (Docker 20.10 and newer set it for every bridged container anyway). Only /data
# (volume) and /tmp (tmpfs, job forensics scratch) are written: run it --read-only.
# See docs/deployment.md ("Docker") and docker-compose.yml.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: honeyjet and its dependencies into a virtual environment ----------------
FROM ${PYTHON_IMAGE} AS build
# speed = uvloop; postgres = asyncpg (the fleet collector, a PostgreSQL store)
ARG EXTRAS=speed,postgres
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# every dependency ships wheels for CPython 3.11 (no compiler in either stage);
# pip compiles the byte code here (the final image's file system is read-only)
RUN python3 -m venv /opt/honeyjet \
 && /opt/honeyjet/bin/pip install ".[${EXTRAS}]" \
 && /opt/honeyjet/bin/pip uninstall -y pip setuptools \
 && /opt/honeyjet/bin/honeyjet --version

# ---- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="honeyjet" \
      org.opencontainers.image.description="Network-printer honeypot: PJL/9100, web, IPP, LPD, SNMP and CUPS browsing from one persistent device persona" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="docs/deployment.md"

# ghostscript: job text and previews; bubblewrap: its sandbox where user namespaces are
# allowed (under Docker's default seccomp profile they are not, and honeyjet falls back to
# resource limits: see docs/deployment.md); libmagic1: file types; tini: PID 1 that reaps
# the forensics workers' children and forwards SIGTERM. prlimit comes with util-linux.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ghostscript bubblewrap libmagic1 tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 honeyjet \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin honeyjet \
 && install -d -o 10001 -g 10001 -m 0750 /data \
 && install -d -m 0755 /config

COPY --from=build /opt/honeyjet /opt/honeyjet
COPY packaging/docker/entrypoint.sh /usr/local/bin/honeyjet-entrypoint
COPY packaging/docker/healthcheck.py /usr/local/bin/honeyjet-healthcheck

# HONEYJET_SENSOR__USER only matters when the container is started as root (--user 0):
# the sensor then binds its ports and drops to this image's user.
ENV PATH=/opt/honeyjet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TINI_SUBREAPER=1 \
    HONEYJET_SENSOR__DATA_DIR=/data \
    HONEYJET_SENSOR__USER=honeyjet

# pjl, http, ipp, lpd; snmp and CUPS browsing (udp)
EXPOSE 9100/tcp 80/tcp 631/tcp 515/tcp 161/udp 631/udp
# only when enabled or for the other commands: console, metrics, collector
EXPOSE 8080/tcp 9464/tcp 8443/tcp

# /config is a mount point only (mount it read-only); as a VOLUME it would get a writable
# anonymous volume on every run
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001

# reads the socket tables (never connects: a probe would be a honeypot session); the
# interpreters are named so that the scripts need no execute bit from the checkout
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["/opt/honeyjet/bin/python", "/usr/local/bin/honeyjet-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/bin/sh", "/usr/local/bin/honeyjet-entrypoint"]
CMD ["run"]
