# Build stage: compile the release binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# The dependencies first, in a layer of their own, built against empty
# sources: a change to src/ then rebuilds the service alone. The empty
# build's own artefacts go, so the real sources are compiled afresh.
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin user-accounts \
    && rm -rf src target/release/user-accounts target/release/deps/user_accounts-* \
        target/release/deps/libuser_accounts-* target/release/.fingerprint/user-accounts-*
COPY src ./src
RUN cargo build --release --locked --bin user-accounts

# Runtime stage: a small Debian image, no compiler, a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app accounts
WORKDIR /app
COPY --from=build /src/target/release/user-accounts /usr/local/bin/user-accounts
COPY Rocket.toml ./
COPY static ./static
USER accounts
ENV ROCKET_ADDRESS=0.0.0.0 \
    ROCKET_PORT=8000 \
    ROCKET_PROFILE=release
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/health/ready || exit 1
CMD ["user-accounts"]
