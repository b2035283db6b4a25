# ns toolkit: see README.md.  make, make check, make check SAN=1, make bench,
# make bench-fed, make bench-relay, make install PREFIX=...
include config.mk

PROGS   = ns-keygen ns-sign ns-verify ns-serve ns-beam ns-client ns-log ns-gossip ns-relay
SCRIPTS = ns-node
BIN     = $(PROGS:%=bin/%)
COMMON_SRC = $(wildcard common/*.c)
COMMON_OBJ = $(COMMON_SRC:common/%.c=obj/%.o)
COMMON_HDR = $(wildcard common/*.h)

# A sanitizer build lives in its own tree so it never mixes objects with the
# normal build.
ifeq ($(SAN),1)
OBJDIR = obj-san
BINDIR_B = bin-san
else
OBJDIR = obj
BINDIR_B = bin
endif
COMMON_OBJ := $(COMMON_SRC:common/%.c=$(OBJDIR)/%.o)
BIN := $(PROGS:%=$(BINDIR_B)/%)
LIB = $(OBJDIR)/libns.a

all: $(BIN)

$(OBJDIR)/%.o: common/%.c $(COMMON_HDR) config.mk
	@mkdir -p $(OBJDIR)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(OBJDIR)/cmd-%.o: cmd/%.c $(COMMON_HDR) config.mk
	@mkdir -p $(OBJDIR)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(COMMON_OBJ)
	rm -f $@
	$(AR) rcs $@ $(COMMON_OBJ)

$(BINDIR_B)/%: $(OBJDIR)/cmd-%.o $(LIB)
	@mkdir -p $(BINDIR_B)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# A program that outgrew one file has a folder cmd/NAME/ of its own, with
# a header shared by its files.
define dirprog
$(1)_SRC := $$(wildcard cmd/$(1)/*.c)
$(1)_OBJ := $$($(1)_SRC:cmd/$(1)/%.c=$$(OBJDIR)/$(1)/%.o)
$$(OBJDIR)/$(1)/%.o: cmd/$(1)/%.c $$(wildcard cmd/$(1)/*.h) $$(COMMON_HDR) config.mk
	@mkdir -p $$(OBJDIR)/$(1)
	$$(CC) $$(CPPFLAGS) -Icmd/$(1) $$(CFLAGS) -c -o $$@ $$<
$$(BINDIR_B)/$(1): $$($(1)_OBJ) $$(LIB)
	@mkdir -p $$(BINDIR_B)
	$$(CC) $$(LDFLAGS) -o $$@ $$($(1)_OBJ) $$(LIB) $$(LDLIBS)
endef
DIRPROGS = $(patsubst cmd/%/,%,$(wildcard cmd/*/))
$(foreach p,$(DIRPROGS),$(eval $(call dirprog,$(p))))

# Install missing Debian packages (as root), or name them (otherwise).
deps:
	@sh share/setup/deps.sh

# The whole bats suite; the last line is "N passed, N failed".
check: deps testhelpers
	@$(MAKE) --no-print-directory all
	@NS_BIN=$(CURDIR)/$(BINDIR_B) sh t/helpers/run-tests.sh $(TESTS)

# Start a node on the embedded default: data in $(NS_HOME), listening on
# 127.0.0.1:7700, state in SQLite.
NS_HOME ?= $(HOME)/.local/share/northstar
run: deps
	@$(MAKE) --no-print-directory all
	@[ -e "$(NS_HOME)/node.key" ] || sh share/ns-node init "$(NS_HOME)"
	@exec sh share/ns-node run "$(NS_HOME)"

# The tests' own WebSocket client (not installed).
testhelpers: t/helpers/wsc t/helpers/spancheck

t/helpers/wsc: t/helpers/wsc.c $(LIB) $(COMMON_HDR)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ t/helpers/wsc.c $(LIB) $(LDLIBS)

t/helpers/spancheck: t/helpers/spancheck.c $(LIB) $(COMMON_HDR)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ t/helpers/spancheck.c $(LIB) $(LDLIBS)

bench: deps all testhelpers
	@NS_BIN=$(CURDIR)/$(BINDIR_B) sh share/bench/run.sh

# Only the federation figures (also the last part of make bench).
bench-fed: deps all
	@NS_BIN=$(CURDIR)/$(BINDIR_B) sh share/bench/fed.sh

# Only the live stream figures (also the very last part of make bench).
bench-relay: deps all testhelpers
	@NS_BIN=$(CURDIR)/$(BINDIR_B) sh share/bench/relay.sh

# The service files name the installed ns-node and share directory: the
# sources say /usr/local/bin/ and /usr/local/share/northstar/, which sed
# turns into $(BINDIR)/ and $(SHAREDIR)/.
SERVICE = northstar.service \
          runit/northstar/run runit/northstar/finish runit/northstar/log/run \
          s6/northstar/run s6/northstar/finish s6/northstar/log/run
SERVICE_DIRS = runit/northstar/log runit/northstar runit \
               s6/northstar/log s6/northstar s6
DOCS = $(notdir $(wildcard share/doc/*))

install: all
	mkdir -p $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(SHAREDIR)/doc
	cp -f $(BIN) $(DESTDIR)$(BINDIR)/
	cp -f share/ns-node $(DESTDIR)$(BINDIR)/ns-node
	chmod 755 $(DESTDIR)$(BINDIR)/ns-node
	cp -f share/man/man1/*.1 $(DESTDIR)$(MANDIR)/man1/
	cp -f $(DOCS:%=share/doc/%) $(DESTDIR)$(SHAREDIR)/doc/
	@set -e; for f in $(SERVICE); do \
		d="$(DESTDIR)$(SHAREDIR)/service/$$f"; \
		mkdir -p "$$(dirname "$$d")"; \
		sed -e 's|/usr/local/bin/|$(BINDIR)/|g' \
		    -e 's|/usr/local/share/northstar/|$(SHAREDIR)/|g' \
		    "share/service/$$f" >"$$d"; \
		if [ -x "share/service/$$f" ]; then chmod 755 "$$d"; else chmod 644 "$$d"; fi; \
		echo "sed ... share/service/$$f >$$d"; \
	done

uninstall:
	rm -f $(PROGS:%=$(DESTDIR)$(BINDIR)/%) $(DESTDIR)$(BINDIR)/ns-node
	rm -f $(PROGS:%=$(DESTDIR)$(MANDIR)/man1/%.1) $(DESTDIR)$(MANDIR)/man1/ns-node.1
	rm -f $(DOCS:%=$(DESTDIR)$(SHAREDIR)/doc/%)
	rm -f $(SERVICE:%=$(DESTDIR)$(SHAREDIR)/service/%)
	-rmdir $(SERVICE_DIRS:%=$(DESTDIR)$(SHAREDIR)/service/%) \
	    $(DESTDIR)$(SHAREDIR)/service $(DESTDIR)$(SHAREDIR)/doc $(DESTDIR)$(SHAREDIR)

clean:
	rm -rf obj obj-san bin bin-san

.PHONY: all deps run check bench bench-fed bench-relay install uninstall clean
.PRECIOUS: $(OBJDIR)/%.o $(OBJDIR)/cmd-%.o
