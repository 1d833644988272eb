# traefik-oidc-sidecar image: a static binary on an empty base, running as a non-root user.
#   docker build --build-arg TOS_COMMIT=$(git rev-parse --short=12 HEAD) -t traefik-oidc-sidecar .
# The release image (scripts/release.sh, docs/install.md) is built without Docker and holds the
# same files, user, environment and labels; this file is for users who build with Docker.
# syntax=docker/dockerfile:1
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev ca-certificates
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The commit `--version` prints (no .git in the build context).
ARG TOS_COMMIT=unknown
# benches/ and tests/ are not needed to build the binary; drop their manifest entries.
RUN sed -i '/^\[\[bench\]\]/,/^harness/d' Cargo.toml \
 && cargo build --release --locked --bin traefik-oidc-sidecar \
 && strip target/release/traefik-oidc-sidecar
# The root filesystem: CA roots (Redis over TLS reads the platform store, which is empty on
# scratch), a passwd/group naming uid 65532, and a world-writable /tmp.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/etc/traefik-oidc-sidecar /rootfs/tmp \
 && chmod 1777 /rootfs/tmp \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group \
 && cp target/release/traefik-oidc-sidecar /rootfs/traefik-oidc-sidecar

FROM scratch
ARG TOS_COMMIT=unknown
ARG VERSION=0.1.0
COPY --from=build /rootfs/ /
# No shell, no package manager, no root.
USER 65532:65532
EXPOSE 4181
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    TRAEFIK_OIDC_SIDECAR_CONFIG=/etc/traefik-oidc-sidecar/config.yaml
LABEL org.opencontainers.image.title="traefik-oidc-sidecar" \
      org.opencontainers.image.description="OpenID Connect login for anything behind Traefik" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${TOS_COMMIT}" \
      org.opencontainers.image.source="https://github.com/traefik-oidc-sidecar/traefik-oidc-sidecar" \
      org.opencontainers.image.licenses="MIT"
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["/traefik-oidc-sidecar", "--health-check"]
ENTRYPOINT ["/traefik-oidc-sidecar"]
