# The one entry point (DESIGN §8). CMake builds underneath.
#   make        release binary at build/enginelabs-2api
#   make run    install what is missing, build, start (demo simulator without CLERK_COOKIE)
#   make test   install what is missing, normal + sanitizer builds, unit, e2e and fuzz tests
#   make bench  benchmarks (bench/)

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all build asan fuzz run test bench deps test-deps clean
all: build

deps:
	@scripts/deps.sh build

test-deps:
	@scripts/deps.sh test

build: deps
	@cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_BIN_DIR=$(CURDIR)/build \
		-DGW_TESTS=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build/release -j$(JOBS) -- --no-print-directory >build/release.log 2>&1 || { cat build/release.log; exit 1; }
	@test -x build/enginelabs-2api

asan: deps
	@cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DGW_SANITIZE=ON -DGW_BIN_DIR=$(CURDIR)/build/asan \
		$(CMAKE_FLAGS) >/dev/null
	@cmake --build build/asan -j$(JOBS) -- --no-print-directory >build/asan.log 2>&1 || { cat build/asan.log; exit 1; }
	@test -x build/asan/enginelabs-2api

fuzz: deps
	@cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DGW_FUZZ=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build/fuzz -j$(JOBS) -- --no-print-directory >build/fuzz.log 2>&1 || { cat build/fuzz.log; exit 1; }

run: build
	@scripts/run.sh

test: test-deps
	@scripts/test.sh

bench: test-deps build
	@bench/run.sh

clean:
	rm -rf build
