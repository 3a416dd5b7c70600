# gpugate front door. `make test` and `make run` work on a fresh Debian 12
# machine as root: they install what they need (make deps) and build.
BUILD ?= build
SAN_BUILD ?= build-san
FUZZ_SECONDS ?= 20
JOBS ?= $(shell nproc)
DEPS = libmicrohttpd-dev libcurl4-openssl-dev scdoc prometheus clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev cmake g++ make pkg-config \
       libfmt-dev libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libsystemd-dev libgtest-dev libbenchmark-dev \
       clang-format clang-tidy python3 python3-yaml yamllint rsyslog systemd libssl-dev openssh-client libclang-rt-14-dev libzstd-dev zstd

# What make deb needs besides DEPS (debian/control's Build-Depends).
DEB_DEPS = debhelper dh-dkms dpkg-dev lintian libcurl4-openssl-dev

.PHONY: all deps deb build test test-unit test-host vmtest fuzz sanitize checkpatch kmod run bench bench-grant format lint clean

all: build

# Idempotent: installs only what is missing.
define install_missing
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make $@: installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "make $@: all $(2) present"; fi
endef

deps:
	$(call install_missing,$(DEPS),build and test dependencies)

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Every venue: unit (no privilege), host (root, this kernel) and vm (Debian's
# 6.1 and 6.12 kernels in QEMU; tools/vmtest installs QEMU and the kernels),
# then the fuzz targets and the unit and host suites under ASan and UBSan.
test: build
	cd $(BUILD) && ctest --output-on-failure -L 'unit|host|vm|system'
	$(MAKE) checkpatch
	$(MAKE) fuzz
	$(MAKE) sanitize

# The kernel's style check over kmod/ (the module and the shared pure C).
checkpatch:
	tools/checkpatch $(BUILD)/cache

# gpugate.ko against the running kernel (KVER=... KDIR=... for others; the
# guest kernels' builds are tools/vmtest's). docs/kernel-module.md.
kmod:
	$(MAKE) -C kmod OUT=$(CURDIR)/$(BUILD)/kmod

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

test-host: build
	cd $(BUILD) && ctest --output-on-failure -L host

vmtest: build
	tools/vmtest --build $(BUILD)

# One sanitized build serves both (clang, GPUGATE_FUZZ: everything built
# with ASan and UBSan, findings abort): the libFuzzer targets
# (tests/fuzz/*_fuzz.cpp), each run FUZZ_SECONDS on a scratch copy of its
# seeds (tests/fuzz/corpus/NAME), and the unit and host suites under the
# sanitizers. (-DGPUGATE_SANITIZE=ON does the latter with g++, on its own.)
$(SAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	      -DCMAKE_CXX_COMPILER=clang++ -DGPUGATE_FUZZ=ON

fuzz: deps $(SAN_BUILD)/CMakeCache.txt
	cmake --build $(SAN_BUILD) -j $(JOBS) --target fuzz
	tests/fuzz/run-all $(SAN_BUILD) $(FUZZ_SECONDS)

sanitize: deps $(SAN_BUILD)/CMakeCache.txt
	cmake --build $(SAN_BUILD) -j $(JOBS) --target gpugate_unit_tests gpugate_host_tests
	cd $(SAN_BUILD) && ctest --output-on-failure -L 'unit|host'

# The main job: gpugated with the default configuration on this kernel, a
# stand-in NVIDIA control node (/dev/full) and a bundled client issuing real
# NVIDIA-ABI ioctls. DEMO_DURATION=0 runs until Ctrl-C.
run: build
	tools/demo $(BUILD)

# What recording costs (observer-bench, as root), then the GPU state watcher's
# sampling round of 8 GPUs through NVML (tests/unit/fake_nvml.c, one ioctl per
# query) and sysfs (issue 12's target: a round <= 10 ms), then the ledger's
# volume per day of modeled traffic at each recording level (issue 15).
# BENCHMARKS.md.
bench: build
	tools/bench/observer-bench $(BUILD)
	mkdir -p $(BUILD)/bench
	$(BUILD)/bin/gpugate-watch-bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
		--benchmark_out=$(BUILD)/bench/watch-bench.json --benchmark_out_format=json
	tools/bench/traffic-model $(BUILD) --json $(BUILD)/bench/traffic-model.json

# From gpugate request submit to a live kernel grant (issue 4's target: median <= 5 ms).
bench-grant: build
	tools/bench/grant-bench $(BUILD)

# Debian packages gpugate and gpugate-dkms in $(BUILD)/deb, checked by
# lintian (any warning or error fails). debian/, docs/operations.md.
deb: deps
	$(call install_missing,$(DEB_DEPS),packaging tools)
	dpkg-checkbuilddeps
	rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb
	debian/rules clean
	DEB_BUILD_OPTIONS="parallel=$(JOBS) $$DEB_BUILD_OPTIONS" DEB_DESTDIR=$(abspath $(BUILD))/deb debian/rules binary
	debian/rules clean
	lintian --fail-on warning,error --info $(BUILD)/deb/*.deb
	@ls -l $(BUILD)/deb

format:
	tools/format

lint: build
	tools/lint $(BUILD)

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
