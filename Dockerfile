# syntax=docker/dockerfile:1
# crm-classify: build with the Rust toolchain, run on a distroless base as a
# non-root user. The SQLite database lives on the /data volume; point
# CRM_DATABASE_URL at PostgreSQL for production.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
COPY migrations migrations
COPY proto proto
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && strip target/release/crm-classify \
    && mkdir -p /data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/crm-classify /usr/local/bin/crm-classify
COPY --from=build --chown=nonroot:nonroot /data /data
# The image listens on 0.0.0.0, which --auth auto refuses: it chooses
# `none` (trust the network in front of it). Set CRM_AUTH=jwt and the
# CRM_JWT_* variables to verify callers' tokens instead.
ENV CRM_LISTEN=0.0.0.0:50051 \
    CRM_AUTH=none \
    CRM_DATABASE_URL=sqlite:///data/crm-classify.db \
    CRM_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 50051
USER nonroot
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/crm-classify", "health-check"]
ENTRYPOINT ["/usr/local/bin/crm-classify"]
CMD ["serve"]
