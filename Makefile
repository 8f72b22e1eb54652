# ringcast — one Makefile for everything. See README.md.
#   make            build bin/ringcast, bin/ringcast-bench and libringcast.a
#   make run        install deps, build, start the gateway on the embedded default config
#   make test       install deps, build, run unit + integration + fuzz-regression tests
#   make asan       the same suite under ASan+UBSan+LSan (libc malloc, clang)
#   make fuzz       build the libFuzzer targets and run each briefly
#   make perf       run the perf suite (perf/run-all)
#   make check-layering   src/ does no I/O and never reaches into shards/; shards/ in layers
# Options: BUILD=dir (object/binary dir), SANITIZER=asan, CC=, WITH_LTO=1, V=1

BUILD      ?= build
CC         ?= cc
SANITIZER  ?=
WITH_LTO   ?=
PREFIX     ?= /usr/local
ARGS       ?=

ifeq ($(CC),cc)
CC := gcc
endif

LLHTTP_INC := /usr/share/include/llhttp
LLHTTP_SRC := /usr/share/llhttp
SSL_INC    := /usr/include/android
SSL_LIB    := /usr/lib/x86_64-linux-gnu/android

WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -Wno-unused-parameter -Wvla -Wformat=2
CFLAGS_COMMON := -std=gnu11 -g -O2 -fno-strict-aliasing -D_GNU_SOURCE -pthread \
                 -Iinclude -Isrc -I. -I$(LLHTTP_INC) -I$(SSL_INC) -MMD -MP
# Only what the code calls: libssl (TLS termination), libcrypto (SHA-1, base64, HMAC, SipHash),
# hiredis (RESP for the Redis engine).
LDLIBS_COMMON := -luring -ldeflate -L$(SSL_LIB) -Wl,-rpath,$(SSL_LIB) -lssl -lcrypto \
                 -lcjson -lhiredis -lpthread -lm

ifeq ($(SANITIZER),asan)
CC := clang
CFLAGS_COMMON += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
                 -fno-sanitize-recover=undefined -DRC_DEBUG=1
LDFLAGS_SAN := -fsanitize=address,undefined
ALLOC_LIB :=
else
LDFLAGS_SAN :=
ALLOC_LIB := -ljemalloc
endif
ifeq ($(WITH_LTO),1)
CFLAGS_COMMON += -flto
LDFLAGS_SAN += -flto
endif

CFLAGS  := $(CFLAGS_COMMON) $(WARN) $(EXTRA_CFLAGS)
LDFLAGS := $(LDFLAGS_SAN) $(EXTRA_LDFLAGS)

ifneq ($(V),1)
Q := @
endif

# Sources are discovered, so adding a module never needs a Makefile edit.
CORE_SRC   := $(sort $(wildcard src/*.c src/base/*.c))
SHARD_SRC  := $(sort $(wildcard shards/*.c))
APP_SRC    := $(sort $(wildcard src/app/*.c))
BENCH_SRC  := $(sort $(wildcard tools/bench/*.c))
UNIT_SRC   := $(sort $(wildcard tests/unit/*_test.c))
FUZZ_SRC   := $(sort $(wildcard tests/fuzz/*_fuzz.c))
EXAMPLE_SRC:= $(sort $(wildcard examples/*.c))
LLHTTP_C   := llhttp.c api.c http.c

CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
SHARD_OBJ  := $(SHARD_SRC:%.c=$(BUILD)/obj/%.o)
APP_OBJ    := $(APP_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_OBJ  := $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)
LLHTTP_OBJ := $(LLHTTP_C:%.c=$(BUILD)/llhttp/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
EXAMPLE_BIN:= $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)
LIB        := $(BUILD)/libringcast.a

.PHONY: all run test unit integration fuzz-regress asan fuzz perf check-layering deps clean \
        install help
all: $(BUILD)/bin/ringcast $(BUILD)/bin/ringcast-bench $(EXAMPLE_BIN) bin-links \
     $(BUILD)/bin/bcast-floor

# bin/ and libringcast.a at the top are links into the default build dir.
bin-links: $(BUILD)/bin/ringcast $(BUILD)/bin/ringcast-bench
ifeq ($(BUILD),build)
	$(Q)mkdir -p bin && ln -sf ../build/bin/ringcast bin/ringcast && \
	  ln -sf ../build/bin/ringcast-bench bin/ringcast-bench && \
	  ln -sf build/libringcast.a libringcast.a
endif
.PHONY: bin-links

# The installer runs before make evaluates anything that depends on installed files: GNU make
# caches a directory listing (e.g. $(LLHTTP_SRC)) the first time a rule looks into it, so a
# target that installs and builds in one invocation must build in a fresh sub-make.
DEPS_CMD ?= tools/install-deps.sh
deps:
	$(Q)$(DEPS_CMD)

# deps, then everything `make test` needs, built by a sub-make that sees the installed files.
# BUILD_ALL_GOALS narrows what is built (tests/integration/fresh_build_test.py).
BUILD_ALL_GOALS ?= all $(UNIT_BIN) fuzz-regress-bin
build-all: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD_ALL_GOALS)
.PHONY: build-all

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# llhttp's Debian sources: their own object dir and their own (quiet) flags.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS_COMMON) -w -c $< -o $@

$(LIB): $(CORE_OBJ) $(SHARD_OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

# Assets the program embeds, generated at build time (tools/embed-asset.py): the JS client
# library served at GET /ringcast.js.
ASSET_OBJ := $(BUILD)/obj/gen/ringcast_js.o
$(BUILD)/gen/ringcast_js.c: clients/js/ringcast.js tools/embed-asset.py
	@mkdir -p $(dir $@)
	$(Q)python3 tools/embed-asset.py $< rc_asset_ringcast_js > $@.tmp && mv $@.tmp $@
$(ASSET_OBJ): $(BUILD)/gen/ringcast_js.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/bin/ringcast: $(APP_OBJ) $(ASSET_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(APP_OBJ) $(ASSET_OBJ) $(LIB) $(LDLIBS_COMMON) $(ALLOC_LIB)

$(BUILD)/bin/ringcast-bench: $(BENCH_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(BENCH_OBJ) $(LIB) $(LDLIBS_COMMON) $(ALLOC_LIB)

# perf/bcast-floor: the broadcast floor of perf/ (issue 14); src/handshake for the 101 only.
$(BUILD)/bin/bcast-floor: $(BUILD)/obj/perf/bcast-floor/bcast_floor.o $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS_COMMON)

$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS_COMMON) $(ALLOC_LIB)

$(BUILD)/tests/%_test: $(BUILD)/obj/tests/unit/%_test.o $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS_COMMON) -lcriterion $(ALLOC_LIB)

# ---- tests -------------------------------------------------------------------------------
run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(BUILD)/bin/ringcast $(ARGS)

test: build-all
	$(Q)tests/run-tests.sh --build $(BUILD)

unit: all $(UNIT_BIN)
	$(Q)tests/run-tests.sh --build $(BUILD) --only unit

integration: all
	$(Q)tests/run-tests.sh --build $(BUILD) --only integration

asan: deps
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SANITIZER=asan all \
	  $(UNIT_SRC:tests/unit/%.c=build-asan/tests/%) fuzz-regress-bin
	$(Q)tests/run-tests.sh --build build-asan --asan

# ---- fuzzing -----------------------------------------------------------------------------
FUZZ_CFLAGS := $(filter-out -fsanitize=%,$(CFLAGS)) -O1 -fno-omit-frame-pointer -DRC_DEBUG=1
FUZZ_BIN    := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
REGR_BIN    := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz-regress/%)
FUZZ_TIME   ?= 20

# libFuzzer builds: clang, whole core compiled in (no shards, no app).
$(BUILD)/fuzz/%: tests/fuzz/%.c $(CORE_SRC) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(CORE_SRC) \
	  $(LLHTTP_OBJ) $(LDLIBS_COMMON)

# Regression replays: the same targets linked to a tiny driver (tests/fuzz/replay_main.c)
# that runs every file of corpus/<target>/ once; built with the suite's compiler.
$(BUILD)/fuzz-regress/%: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/replay/replay_main.o $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_COMMON)

fuzz-regress-bin: $(REGR_BIN)
.PHONY: fuzz-regress-bin

fuzz: $(FUZZ_BIN)
	$(Q)for f in $(FUZZ_BIN); do t=$$(basename $$f); \
	  mkdir -p tests/fuzz/corpus/$$t $(BUILD)/fuzz/corpus-$$t; \
	  d=""; [ -f tests/fuzz/$$t.dict ] && d="-dict=tests/fuzz/$$t.dict"; \
	  echo "== fuzz $$t ($(FUZZ_TIME)s; new inputs in $(BUILD)/fuzz/corpus-$$t)"; \
	  $$f $$d -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	    -artifact_prefix=$(BUILD)/fuzz/$$t- $(BUILD)/fuzz/corpus-$$t tests/fuzz/corpus/$$t \
	    > $(BUILD)/fuzz/$$t.log 2>&1; rc=$$?; tail -n 6 $(BUILD)/fuzz/$$t.log; \
	  if [ $$rc -ne 0 ]; then echo "fuzz $$t failed: see $(BUILD)/fuzz/$$t.log"; exit 1; fi; \
	done

# ---- perf and checks ---------------------------------------------------------------------
perf: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)perf/run-all --build $(BUILD)

check-layering:
	$(Q)tools/check-layering.sh

install: all
	install -D -m 0755 $(BUILD)/bin/ringcast $(DESTDIR)$(PREFIX)/bin/ringcast
	install -D -m 0755 $(BUILD)/bin/ringcast-bench $(DESTDIR)$(PREFIX)/bin/ringcast-bench

clean:
	rm -rf build build-* bin libringcast.a

help:
	@sed -n '1,12p' Makefile

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
.SECONDARY:
