# appman-package-server: build, run, test.
CARGO ?= cargo
DATA ?= data
SAMPLE := io.example.hello

.PHONY: build release run certificates test test-browser test-long test-dist test-s3 garage dist install fmt fmt-check lint bench bench-dist bench-s3 fuzz mutants clean

# The host's target triple: make dist builds for it explicitly, so that RUSTFLAGS apply to the
# binaries only, not to build scripts.
HOST := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
PREFIX ?= /usr/local
DESTDIR ?=

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

# A CA, a developer CA, a developer and a store certificate in certs/ (PKCS#12 password:
# password), to try signing without Qt's test data (build/make-certificates.sh).
certificates:
	build/make-certificates.sh certs

# Everything CI runs: formatting, lints, and all tests.
test: fmt-check lint
	@rm -rf target/tmp/skipped
	@tests/leftovers.sh before
	$(CARGO) test --lib --tests
	$(CARGO) test --manifest-path vendor/tiny_http/Cargo.toml
	@tests/skipped-summary.sh
	@tests/leftovers.sh after

# The page in headless Chromium (tests/browser.rs; Debian's chromium and chromium-driver).
# make test runs it too when Chromium is installed, and names it as skipped otherwise; here a
# missing Chromium is a failure. Screenshots are kept in target/browser/.
test-browser:
	AMPS_REQUIRE_BROWSER=1 $(CARGO) test --test tests browser
	@ls target/browser/*.png

# Garage (AGPL, an outside test server for the S3 store, never linked or shipped), built once
# into $(GARAGE_ROOT), outside the clone: about 12 minutes on 2 cores.
GARAGE_ROOT ?= $(HOME)/.cache/amps-garage
garage:
	@test -x $(GARAGE_ROOT)/bin/garage || CARGO_TARGET_DIR=$(GARAGE_ROOT)/target \
		cargo install garage --version 2.5.0 --locked --root $(GARAGE_ROOT)

# The S3 store against a 3-node Garage cluster (tests/s3.rs; make test runs them too when
# Garage is built, and names them skipped otherwise); here a missing Garage is built.
test-s3: garage
	AMPS_REQUIRE_GARAGE=1 AMPS_GARAGE=$(GARAGE_ROOT)/bin/garage $(CARGO) test --test tests s3::

# Everything in `test`, plus the long reliability tests (300 slow clients and their closing
# within 60 s, 15 s of concurrent use, SIGKILL at 20 points of an upload).
test-long: fmt-check lint
	@rm -rf target/tmp/skipped
	$(CARGO) test --lib --tests -- --include-ignored
	$(CARGO) test --manifest-path vendor/tiny_http/Cargo.toml
	@tests/skipped-summary.sh

# Static, stripped binaries in dist/ (vendored OpenSSL, static C runtime), with SHA256SUMS.
# Needs perl and make for OpenSSL's build (installed with apt-get when missing). OpenSSL's C
# is built for size (-Os: the work we ask of it, RSA, SHA and HMAC, runs in its assembly)
# and without the algorithms we never use (build/openssl-perl); relative relocations are packed
# (DT_RELR, glibc 2.36), which keeps the binary position-independent at a tenth of the size of
# its relocation table. build/openssl-perl only acts when OpenSSL is built: after changing it,
# remove target/dist-build/*/dist/build/openssl-sys-*.
dist:
	@command -v perl >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq perl; }
	RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs" CFLAGS_$(subst -,_,$(HOST))=-Os \
		OPENSSL_SRC_PERL=$(CURDIR)/build/openssl-perl $(CARGO) build --profile dist --features vendored-openssl --target $(HOST) \
		--target-dir target/dist-build
	mkdir -p dist
	cp target/dist-build/$(HOST)/dist/appman-package-server target/dist-build/$(HOST)/dist/appman-packager dist/
	cd dist && sha256sum appman-package-server appman-packager > SHA256SUMS
	@ls -l dist/appman-package-server dist/appman-packager

# The whole integration suite against the static binaries of dist/, then the tests that run
# them alone in an empty chroot (as root; a visible skip otherwise).
test-dist: dist
	@rm -rf target/tmp/skipped
	AMPS_BIN_DIR=$(CURDIR)/dist $(CARGO) test --lib --tests
	AMPS_BIN_DIR=$(CURDIR)/dist $(CARGO) test --test tests chroot -- --ignored
	@tests/skipped-summary.sh

# Install the dynamic build's binaries into $(DESTDIR)$(PREFIX)/bin.
install: release
	install -d "$(DESTDIR)$(PREFIX)/bin"
	install -s -m 0755 target/release/appman-package-server target/release/appman-packager "$(DESTDIR)$(PREFIX)/bin/"

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

# The S3 store's figures against Garage (release binaries): download speed against a data
# directory, memory under 8 parallel downloads, the delay until another replica sees an
# upload, start-up with 1000 packages from records against a scan.
bench-s3: garage release
	AMPS_REQUIRE_GARAGE=1 AMPS_GARAGE=$(GARAGE_ROOT)/bin/garage AMPS_BIN_DIR=$(CURDIR)/target/release \
		$(CARGO) test --test tests s3_figures -- --ignored --nocapture 2>&1 | grep FIGURE

# The static build against the dynamic one: sizes, ldd, start-up, idle RSS, then make bench's
# figures for each, one after the other.
bench-dist: dist release
	bench/dist.sh
	BENCH_BIN_DIR=dist bench/run.sh
	bench/run.sh

# Mutation testing of the package format code (cargo-mutants, installed when missing): every
# mutant must make a test fail. MUTANTS_FILES narrows it (default: all of src/package/; about
# a minute per mutant here). Without ../shared it shows what the known-answer tests catch.
MUTANTS_FILES ?= src/package/*.rs
mutants:
	@command -v cargo-mutants >/dev/null 2>&1 || $(CARGO) install cargo-mutants --locked
	$(CARGO) mutants $(foreach f,$(wildcard $(MUTANTS_FILES)),-f $(f)) -- --lib --test tests

# Run each fuzz target for FUZZ_SECONDS (default 600); needs the nightly toolchain.
fuzz:
	fuzz/run.sh

clean:
	$(CARGO) clean
