# Makefile: builds build/shardhook, the fake Discord and the tests; runs tests and the demo.
#
#   make                 build build/shardhook
#   make demo            install what is missing, then run fake Discord -> shardhook -> receiver
#   make demo-cluster    the same with Redis and three nodes, one of them killed (docs/cluster.md)
#   make test            install what is missing, then run every test (unit + integration)
#   make SANITIZE=address,undefined test   the same under sanitizers (objects in build/sanitize)
#   make valgrind        unit tests under valgrind
#   make fuzz            libFuzzer on every parser of tests/fuzz/ (clang; FUZZ_SECONDS=60 each)
#   make fuzz-smoke      the same, FUZZ_SMOKE_SECONDS=10 each (CI)
#   WERROR=1             turn warnings into errors (CI)

PKGS := libwebsockets libcurl libmicrohttpd openssl zlib libzstd libcjson hiredis
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

CORE_SRC := $(wildcard lib/*.c config/*.c gateway/*.c http/*.c cluster/*.c cache/*.c) \
            $(filter-out bridge/main.c,$(wildcard bridge/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FAKE_SRC := $(wildcard tests/fake/*.c)
FAKE_OBJ := $(FAKE_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps test check unit integration demo demo-cluster valgrind clean fake tests-bin bench-bin fuzz fuzz-smoke
all: $(BUILD)/shardhook

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

# the status page is http/status_page.html, put into this object by .incbin (status_page.c)
$(BUILD)/obj/http/status_page.o build/fuzz/obj/http/status_page.o: http/status_page.html
# the Redis scripts are cluster/scripts/*.lua, put into this object by .incbin (cluster/redis.c)
$(BUILD)/obj/cluster/redis.o build/fuzz/obj/cluster/redis.o: $(wildcard cluster/scripts/*.lua)

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
# everything the suite runs, built from this tree; tests/integration/test_bench_smoke.py runs the
# benchmark's smoke mode, whose Node peers (`make bench-peers`, npm) it skips when absent
tests-bin: $(UNIT_BIN) $(BUILD)/fake-discord $(BUILD)/shardhook $(BENCH_BIN)

# The two commands a newcomer runs. Dependencies are installed first, then make runs
# again so that pkg-config sees the freshly installed libraries.
deps:
	@scripts/install-deps
test: deps
	@$(MAKE) --no-print-directory check
demo: deps
	@$(MAKE) --no-print-directory all fake
	@BUILD=$(BUILD) scripts/demo
demo-cluster: deps
	@$(MAKE) --no-print-directory all fake
	@BUILD=$(BUILD) scripts/demo-cluster

check: tests-bin
	@BUILD=$(BUILD) scripts/run-tests
unit: $(UNIT_BIN)
	@BUILD=$(BUILD) scripts/run-tests unit
integration: tests-bin
	@BUILD=$(BUILD) scripts/run-tests integration

valgrind: $(UNIT_BIN)
	@BUILD=$(BUILD) VALGRIND=1 scripts/run-tests unit

# libFuzzer harnesses (needs clang): tests/fuzz/fuzz_NAME.c -> build/fuzz/fuzz_NAME, linked with
# the core built again with ASan + UBSan; seeds in tests/fuzz/corpus_NAME/. `make fuzz` runs each
# for FUZZ_SECONDS, `make fuzz-smoke` (CI) for FUZZ_SMOKE_SECONDS; new inputs go to
# build/fuzz/corpus/NAME, a crash to build/fuzz/crash-NAME-<sha1>.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_CC ?= clang
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. $(PKG_CFLAGS) \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               $(if $(filter 1,$(WERROR)),-Werror)
FUZZ_NAMES := $(sort $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_BIN := $(FUZZ_NAMES:%=build/fuzz/fuzz_%)
FUZZ_OBJ := $(CORE_SRC:%.c=build/fuzz/obj/%.o)
# the longest input per harness (default 4096)
FUZZ_MAX_LEN_envelope := 8192
FUZZ_MAX_LEN_config := 16384
FUZZ_MAX_LEN_checkpoint := 16384
FUZZ_MAX_LEN_spool := 16384
FUZZ_MAX_LEN_retry_after := 128
FUZZ_MAX_LEN_control := 8192
build/fuzz/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
build/fuzz/libshardhook.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libshardhook.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< build/fuzz/libshardhook.a $(PKG_LIBS) \
	    -lpthread -lm -o $@
# run harness $(1) for $(2) seconds; its output goes to build/fuzz/fuzz_$(1).log, whose tail is
# shown when it finds a crash or a leak
fuzz_one = mkdir -p build/fuzz/corpus/$(1) && echo "== fuzz_$(1): $(2) s" && \
	if build/fuzz/fuzz_$(1) -max_total_time=$(2) -max_len=$(or $(FUZZ_MAX_LEN_$(1)),4096) \
	    -print_final_stats=1 -artifact_prefix=build/fuzz/crash-$(1)- build/fuzz/corpus/$(1) \
	    tests/fuzz/corpus_$(1) >build/fuzz/fuzz_$(1).log 2>&1; \
	then grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' build/fuzz/fuzz_$(1).log; \
	else tail -n 80 build/fuzz/fuzz_$(1).log; exit 1; fi
fuzz: $(FUZZ_BIN)
	@$(foreach n,$(FUZZ_NAMES),$(call fuzz_one,$(n),$(FUZZ_SECONDS)) && ) true
fuzz-smoke: $(FUZZ_BIN)
	@$(foreach n,$(FUZZ_NAMES),$(call fuzz_one,$(n),$(FUZZ_SMOKE_SECONDS)) && ) true

clean:
	rm -rf build

# keep objects that pattern chains would otherwise delete as intermediates
.SECONDARY:

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
-include $(shell find build/fuzz/obj -name '*.d' 2>/dev/null)

# every benchmark figure in one run: delivery, latency, the inflate roof, the Node peers, idle
# shards (bench/run.py), then the entity cache's memory, CPU and reads (bench/cache.py); figures in
# docs/benchmarks.md. bench-smoke only proves it works.
# bench-cluster: cluster mode's takeover, cold start and Redis load (bench/cluster.py, redis-server).
.PHONY: bench bench-smoke bench-peers bench-cluster
bench: bench-bin bench/peers/node_modules
	BUILD=$(BUILD) python3 bench/run.py --json $(BUILD)/bench/results.json --markdown $(BUILD)/bench/results.md
	BUILD=$(BUILD) python3 bench/cache.py --json $(BUILD)/bench/cache.json --markdown $(BUILD)/bench/cache.md
bench-smoke: bench-bin bench/peers/node_modules
	BUILD=$(BUILD) python3 bench/run.py --smoke
	BUILD=$(BUILD) python3 bench/cache.py --smoke
bench-peers: bench/peers/node_modules
bench/peers/node_modules: bench/peers/package-lock.json
	cd bench/peers && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
bench-cluster: $(BUILD)/shardhook $(BUILD)/fake-discord
	@mkdir -p $(BUILD)/bench
	BUILD=$(BUILD) python3 bench/cluster.py --json $(BUILD)/bench/cluster.json --markdown $(BUILD)/bench/cluster.md
