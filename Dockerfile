# traefik-oidc-sidecar image: a static binary on an empty base, running as a non-root user.
#   docker build -t traefik-oidc-sidecar .
# syntax=docker/dockerfile:1
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The commit `--version` prints (no .git in the build context): docker build --build-arg
# TOS_COMMIT=$(git rev-parse --short=12 HEAD) .
ARG TOS_COMMIT=unknown
# benches/ and tests/ are not needed to build the binary; drop their manifest entries.
RUN sed -i '/^\[\[bench\]\]/,/^harness/d' Cargo.toml \
 && cargo build --release --locked --bin traefik-oidc-sidecar \
 && strip target/release/traefik-oidc-sidecar

FROM scratch
COPY --from=build /src/target/release/traefik-oidc-sidecar /traefik-oidc-sidecar
# No shell, no package manager, no root.
USER 65532:65532
EXPOSE 4181
ENV TRAEFIK_OIDC_SIDECAR_CONFIG=/etc/traefik-oidc-sidecar/config.yaml
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["/traefik-oidc-sidecar", "--health-check"]
ENTRYPOINT ["/traefik-oidc-sidecar"]
