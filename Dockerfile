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
EXPOSE 8080 9901
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/fulcrum"]
# Mount your own file over /etc/fulcrum/fulcrum.toml; listen on 0.0.0.0 inside a container.
CMD ["run", "--config", "/etc/fulcrum/fulcrum.toml"]
