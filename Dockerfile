# Multi-stage build: compile in the Rust image, run in a minimal non-root image.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY config config
COPY examples examples
COPY benches benches
COPY tests tests
RUN cargo build --release --locked --bin fulcrum

# distroless/cc: glibc + libgcc and nothing else; runs as uid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/fulcrum /usr/local/bin/fulcrum
COPY config /etc/fulcrum
# The bundled config reads its listeners from these (see config/fulcrum.toml): inside the
# container they must be on 0.0.0.0 for `docker run -p 8080:8080` to reach them. The admin
# listener (metrics, /status, POST /reload) is on 0.0.0.0:9901 inside the image too, which is
# safe only because it is not published unless you ask for it (`-p 127.0.0.1:9901:9901`);
# it is deliberately not in EXPOSE, so `docker run -P` leaves it alone.
ENV FULCRUM_LISTEN=0.0.0.0:8080 \
    FULCRUM_ADMIN_LISTEN=0.0.0.0:9901
EXPOSE 8080
STOPSIGNAL SIGTERM
# distroless has no curl: fulcrum asks its own admin listener for /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/fulcrum", "healthcheck", "127.0.0.1:9901"]
ENTRYPOINT ["/usr/local/bin/fulcrum"]
# Mount your own file over /etc/fulcrum/fulcrum.toml (listening on 0.0.0.0 inside a container).
CMD ["run", "/etc/fulcrum/fulcrum.toml"]
