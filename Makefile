# Makefile: builds build/shardhook, the fake Discord and the tests; runs tests and the demo.
#
#   make                 build build/shardhook
#   make demo            install what is missing, then run fake Discord -> shardhook -> receiver
#   make test            install what is missing, then run every test (unit + integration)
#   make SANITIZE=address,undefined test   the same under sanitizers (objects in build/sanitize)
#   make valgrind        unit tests under valgrind
#   make fuzz            libFuzzer on the envelope scanner and inflate (clang; FUZZ_SECONDS=60)
#   WERROR=1             turn warnings into errors (CI)

PKGS := libwebsockets libcurl libmicrohttpd openssl zlib libzstd libcjson
SANITIZE ?=
BUILD ?= $(if $(SANITIZE),build/sanitize,build)
CC ?= cc
CFLAGS ?= -O2 -g
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. $(PKG_CFLAGS) -MMD -MP
ifeq ($(WERROR),1)
override CFLAGS += -Werror
endif
ifneq ($(SANITIZE),)
override CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
override LDFLAGS += -fsanitize=$(SANITIZE)
endif
LDLIBS += $(PKG_LIBS) -lpthread -lm

CORE_SRC := $(wildcard lib/*.c config/*.c gateway/*.c http/*.c) \
            $(filter-out bridge/main.c,$(wildcard bridge/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FAKE_SRC := $(wildcard tests/fake/*.c)
FAKE_OBJ := $(FAKE_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps test check unit integration demo valgrind clean fake tests-bin bench-bin fuzz
all: $(BUILD)/shardhook

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libshardhook.a: $(CORE_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/shardhook: $(BUILD)/obj/bridge/main.o $(BUILD)/libshardhook.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/libshardhook.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/fake-discord: $(FAKE_OBJ) $(BUILD)/libshardhook.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# each bench/NAME.c is one program, build/bench/NAME, linked with the core library
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BUILD)/libshardhook.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

bench-bin: $(BENCH_BIN) $(BUILD)/fake-discord $(BUILD)/shardhook

fake: $(BUILD)/fake-discord
tests-bin: $(UNIT_BIN) $(BUILD)/fake-discord $(BUILD)/shardhook

# The two commands a newcomer runs. Dependencies are installed first, then make runs
# again so that pkg-config sees the freshly installed libraries.
deps:
	@scripts/install-deps
test: deps
	@$(MAKE) --no-print-directory check
demo: deps
	@$(MAKE) --no-print-directory all fake
	@BUILD=$(BUILD) scripts/demo

check: tests-bin
	@BUILD=$(BUILD) scripts/run-tests
unit: $(UNIT_BIN)
	@BUILD=$(BUILD) scripts/run-tests unit
integration: tests-bin
	@BUILD=$(BUILD) scripts/run-tests integration

valgrind: $(UNIT_BIN)
	@BUILD=$(BUILD) VALGRIND=1 scripts/run-tests unit

# libFuzzer harnesses for the gateway parsers (needs clang); FUZZ_SECONDS per harness
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
build/fuzz/fuzz_envelope: tests/fuzz/fuzz_envelope.c gateway/envelope.c lib/errors.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $^ -o $@
build/fuzz/fuzz_inflate: tests/fuzz/fuzz_inflate.c gateway/inflate.c lib/buf.c lib/errors.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $^ -lz -lzstd -o $@
fuzz: build/fuzz/fuzz_envelope build/fuzz/fuzz_inflate
	@mkdir -p build/fuzz/env build/fuzz/inf
	build/fuzz/fuzz_envelope -max_total_time=$(FUZZ_SECONDS) -max_len=8192 build/fuzz/env tests/fuzz/corpus_envelope
	build/fuzz/fuzz_inflate -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build/fuzz/inf tests/fuzz/corpus_inflate

clean:
	rm -rf build

# keep objects that pattern chains would otherwise delete as intermediates
.SECONDARY:

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# every benchmark figure in one run: delivery, latency, the inflate roof, the Node peers, idle
# shards (bench/run.py; figures in docs/benchmarks.md). bench-smoke only proves it works.
.PHONY: bench bench-smoke
bench: bench-bin bench/peers/node_modules
	BUILD=$(BUILD) python3 bench/run.py --json $(BUILD)/bench/results.json --markdown $(BUILD)/bench/results.md
bench-smoke: bench-bin bench/peers/node_modules
	BUILD=$(BUILD) python3 bench/run.py --smoke
bench/peers/node_modules: bench/peers/package-lock.json
	cd bench/peers && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
# tests/integration/test_bench_smoke.py runs the smoke mode
tests-bin: $(BENCH_BIN) bench/peers/node_modules
