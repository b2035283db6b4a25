# ns toolkit build configuration
VERSION = 0.1.0

PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
MANDIR    ?= $(PREFIX)/share/man
SHAREDIR  ?= $(PREFIX)/share/northstar

CC        ?= cc
OPT       ?= -O2 -g
WARN       = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter
CPPFLAGS  += -D_GNU_SOURCE -DNS_VERSION=\"$(VERSION)\" -Icommon
CFLAGS    += -std=c11 $(OPT) $(WARN) -pthread
LDFLAGS   += -pthread -Wl,--as-needed
LDLIBS    += -lwebsockets -lsqlite3 -ljq -lsodium -lcrypto -lm

# make SAN=1: AddressSanitizer + UndefinedBehaviorSanitizer, abort on first report
ifeq ($(SAN),1)
OPT        = -O1 -g -fno-omit-frame-pointer
CFLAGS    += -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS   += -fsanitize=address,undefined
endif
