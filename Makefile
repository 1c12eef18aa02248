# imgchain - plain Makefile (zstd / redis / nbdkit habits).
#
# Sources are discovered, not listed: every src/*/*.c goes into the library
# except the test-only backends in TESTSRC, which are linked only into test
# programs (as SQLite does with SQLITE_TEST).  Each tests/unit/test-*.c,
# tests/fault/test-*.c, tests/crash/test-*.c and tests/chain/test-*.c becomes
# one test binary.  Adding a file therefore never needs a Makefile edit.
#
#   make                  library (static + shared), CLI, imgchain.pc
#   make check            install missing packages, build, run every test
#   make check SANITIZE=address,undefined
#   make check-valgrind   the same suite under valgrind
#   make demo             the snapshot lifecycle on a generated image and 2-disk VM
#   make bench            imgchain beside qemu-img, ratios
#   make headertest fuzz lint-layers install clean

CC       ?= cc
PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include
BINDIR   ?= $(PREFIX)/bin

WARN := -std=c11 -Wall -Wextra -Wshadow -Wvla -Wstrict-prototypes \
        -Wmissing-prototypes -Wmissing-declarations -Wformat=2 -Wcast-qual \
        -Wcast-align -Wundef -Wpointer-arith -Wwrite-strings -Wredundant-decls \
        -Wswitch-enum -Winit-self -Wimplicit-fallthrough -Werror
OPT  ?= -O2 -g
# libxml2 is compiled against but not linked: src/xml/xml-lib.c loads it
# with dlopen at the first XML document (it drags ICU and libstdc++ in,
# 1.1 ms at every start of every command).
PKGS := zlib libzstd json-c
PKG_CFLAGS := $(shell pkg-config --cflags libxml-2.0 $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lz -lzstd -ljson-c)
LIBS := $(PKG_LIBS) -laio -lpthread -ldl

BUILD := build
SANFLAGS :=
comma := ,
ifneq ($(SANITIZE),)
  ifneq ($(filter-out address undefined,$(subst $(comma), ,$(SANITIZE))),)
    $(error SANITIZE takes address and/or undefined, not '$(SANITIZE)')
  endif
  SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
  BUILD := build/san
endif

CPPFLAGS += -D_GNU_SOURCE -Iinclude -Isrc
CFLAGS   += $(WARN) $(OPT) $(SANFLAGS) $(PKG_CFLAGS) -fPIC -fvisibility=hidden -MMD -MP
LDFLAGS  += $(SANFLAGS)

TESTSRC := $(wildcard src/io/io-fault.c src/io/io-crash.c)
LIBSRC  := $(filter-out $(TESTSRC),$(wildcard src/*/*.c))
TOOLSRC := $(wildcard tools/*.c)
HELPSRC := $(wildcard tests/helpers/*.c)
TESTPROGSRC := $(wildcard tests/unit/test-*.c tests/fault/test-*.c tests/crash/test-*.c tests/chain/test-*.c)

LIBOBJ  := $(LIBSRC:%.c=$(BUILD)/obj/%.o)
TESTOBJ := $(TESTSRC:%.c=$(BUILD)/obj/%.o) $(HELPSRC:%.c=$(BUILD)/obj/%.o)
TOOLOBJ := $(TOOLSRC:%.c=$(BUILD)/obj/%.o)
TESTPROGS := $(TESTPROGSRC:%.c=$(BUILD)/%)

.PHONY: all check check-valgrind test-progs demo bench headertest fuzz lint-layers \
        install install-pc clean deps asan ubsan
all: $(BUILD)/libimgchain.a $(BUILD)/libimgchain.so $(BUILD)/imgchain $(BUILD)/imgchain.pc

# V=1 shows the commands.
Q := $(if $(V),,@)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# The CLI sees only the public headers.
$(BUILD)/obj/tools/%.o: tools/%.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) -D_GNU_SOURCE -Iinclude $(CFLAGS) -c $< -o $@

$(BUILD)/libimgchain.a: $(LIBOBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/libimgchain.so: $(LIBOBJ) src/libimgchain.syms
	$(CC) -shared -Wl,--version-script=src/libimgchain.syms -Wl,-soname,libimgchain.so.0 \
	    $(LDFLAGS) -o $@ $(LIBOBJ) $(LIBS)

$(BUILD)/imgchain: $(TOOLOBJ) $(BUILD)/libimgchain.a
	$(CC) $(LDFLAGS) -o $@ $(TOOLOBJ) $(BUILD)/libimgchain.a $(LIBS) -lm

$(BUILD)/imgchain.pc: imgchain.pc.in
	@mkdir -p $(BUILD)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(shell sed -n 's/^#define IC_VERSION_STRING "\(.*\)"/\1/p' include/imgchain/common.h)|' \
	    $< > $@

# Test programs: library objects + test-only backends + helpers + cmocka.
$(BUILD)/tests/%: tests/%.c $(LIBOBJ) $(TESTOBJ)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  TEST    $<")
	$(Q)$(CC) $(CPPFLAGS) -DIC_TEST -Itests/helpers $(CFLAGS) -o $@ $< $(LIBOBJ) $(TESTOBJ) \
	    $(LDFLAGS) $(LIBS) -lcmocka -lm

# Fuzz targets: each tests/fuzz/fuzz-*.c links with the standalone replay
# driver (so corpora replay under any build, and make check runs them on
# generated damaged inputs); `make fuzz` also builds libFuzzer binaries with
# clang when it is installed.
FUZZSRC := $(wildcard tests/fuzz/fuzz-*.c)
FUZZPROGS := $(FUZZSRC:%.c=$(BUILD)/%)
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c $(LIBOBJ)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  FUZZ    $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< tests/fuzz/replay.c $(LIBOBJ) $(LDFLAGS) $(LIBS) -lm

test-progs: all $(TESTPROGS) $(FUZZPROGS)

deps:
	@sh scripts/install-deps.sh

check: deps
	@$(MAKE) --no-print-directory lint-layers
	@$(MAKE) --no-print-directory test-progs
	@BUILD=$(BUILD) sh tests/run.sh

check-valgrind: deps
	@$(MAKE) --no-print-directory test-progs
	@BUILD=$(BUILD) VALGRIND=1 sh tests/run.sh

asan:
	@$(MAKE) --no-print-directory check SANITIZE=address
ubsan:
	@$(MAKE) --no-print-directory check SANITIZE=undefined

demo: deps all
	@BUILD=$(BUILD) sh scripts/demo.sh
	@BUILD=$(BUILD) sh scripts/demo-domain.sh

bench: deps all
	@BUILD=$(BUILD) sh bench/bench.sh

# Each public header must compile alone as strict C99.
headertest:
	@for h in $$(find include -name '*.h'); do \
	    echo "#include \"$${h#include/}\"" | \
	    $(CC) -std=c99 -pedantic -Wall -Wextra -Werror -Iinclude -x c -fsyntax-only - || exit 1; \
	done; echo "headertest: ok"

# Dependencies point one way; see CONVENTIONS.md "Layering".
lint-layers:
	@sh scripts/lint-layers.sh

fuzz: $(FUZZPROGS)
	@if command -v clang >/dev/null 2>&1; then \
	    for f in $(FUZZSRC); do \
	        b=$(BUILD)/fuzz/$$(basename $$f .c); mkdir -p $(BUILD)/fuzz; \
	        echo "  LIBFUZZER $$b"; \
	        clang -D_GNU_SOURCE -Iinclude -Isrc $(PKG_CFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined \
	            -o $$b $$f $(LIBSRC) $(LIBS) -lm || exit 1; \
	    done; \
	    echo "fuzz: run e.g. $(BUILD)/fuzz/fuzz-image -max_total_time=60"; \
	else echo "fuzz: clang not installed; replay drivers built in $(BUILD)/tests/fuzz"; fi

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR)/imgchain/sys $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 755 $(BUILD)/imgchain $(DESTDIR)$(BINDIR)/
	install -m 644 $(BUILD)/libimgchain.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libimgchain.so $(DESTDIR)$(LIBDIR)/libimgchain.so.0
	ln -sf libimgchain.so.0 $(DESTDIR)$(LIBDIR)/libimgchain.so
	install -m 644 include/imgchain/*.h $(DESTDIR)$(INCDIR)/imgchain/
	install -m 644 include/imgchain/sys/*.h $(DESTDIR)$(INCDIR)/imgchain/sys/
	install -m 644 $(BUILD)/imgchain.pc $(DESTDIR)$(LIBDIR)/pkgconfig/

install-pc: $(BUILD)/imgchain.pc
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 $< $(DESTDIR)$(LIBDIR)/pkgconfig/

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
