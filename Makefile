# appman-package-server: build, run, test.
CARGO ?= cargo
DATA ?= data
SAMPLE := io.example.hello

.PHONY: build release run test test-long fmt fmt-check lint bench fuzz clean

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Start the server on ./data (created on first run with a sample package made by our own
# packager from testdata/sample), listening on localhost:8020.
run: release
	@if [ ! -d "$(DATA)" ]; then \
		mkdir -p "$(DATA)/.packages" && \
		target/release/appman-packager create-package "$(DATA)/.packages/$(SAMPLE)_all.ampkg" testdata/sample && \
		echo "created $(DATA)/ with the sample package $(SAMPLE)"; \
	fi
	target/release/appman-package-server --dd "$(DATA)"

# Everything CI runs: formatting, lints, and all tests.
test: fmt-check lint
	@rm -rf target/tmp/skipped
	$(CARGO) test --lib --tests
	$(CARGO) test --manifest-path vendor/tiny_http/Cargo.toml
	@tests/skipped-summary.sh

# Everything in `test`, plus the long reliability tests (300 slow clients and their closing
# within 60 s, 15 s of concurrent use, SIGKILL at 20 points of an upload).
test-long: fmt-check lint
	@rm -rf target/tmp/skipped
	$(CARGO) test --lib --tests -- --include-ignored
	$(CARGO) test --manifest-path vendor/tiny_http/Cargo.toml
	@tests/skipped-summary.sh

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path vendor/tiny_http/Cargo.toml

fmt-check:
	@if $(CARGO) fmt --version >/dev/null 2>&1; then $(CARGO) fmt --all -- --check && \
		$(CARGO) fmt --manifest-path vendor/tiny_http/Cargo.toml -- --check; \
	else echo "NOTICE: rustfmt is not installed, formatting not checked"; fi

lint:
	@if $(CARGO) clippy --version >/dev/null 2>&1; then $(CARGO) clippy --all-targets -- -D warnings && \
		$(CARGO) clippy --manifest-path vendor/tiny_http/Cargo.toml --all-targets -- -D warnings; \
	else echo "NOTICE: clippy is not installed, lints not checked"; fi

# The performance figures (needs nginx, wrk, curl: installed with apt-get when missing).
bench:
	bench/run.sh

# Run each fuzz target for FUZZ_SECONDS (default 600); needs the nightly toolchain.
fuzz:
	fuzz/run.sh

clean:
	$(CARGO) clean
