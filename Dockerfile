# Build stage: the official Swift image with the libraries Kiln links against.
FROM swift:6.1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        libopenblas-dev libdnnl-dev libcurl4-openssl-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev libpq-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product kiln --static-swift-stdlib \
    && cp "$(swift build -c release --show-bin-path)/kiln" /kiln

# Runtime stage: only the shared libraries the binary needs.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        libopenblas0-pthread libdnnl2 libcurl4 zlib1g libpng16-16 libjpeg62-turbo libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/kiln kiln \
    && mkdir -p /var/lib/kiln && chown kiln /var/lib/kiln
COPY --from=build /kiln /usr/local/bin/kiln
COPY config /etc/kiln
USER kiln
VOLUME /var/lib/kiln
EXPOSE 8080
ENV KILN_DATA_DIR=/var/lib/kiln KILN_HOST=0.0.0.0
ENTRYPOINT ["kiln", "serve", "--config", "/etc/kiln/kiln.json"]
