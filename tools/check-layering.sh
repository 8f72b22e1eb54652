#!/usr/bin/env bash
# check-layering.sh: enforces the dependency rules of ARCHITECTURE.md on the C sources.
#   src/ (the sans-I/O core, src/app/ excepted) includes nothing from shards/ or src/app/, no
#   I/O, thread, socket or clock headers, and calls no syscalls (I/O, sockets, clocks,
#   threads, io_uring): bytes and now_ms come in as arguments.
#   src/app/ (the program) never includes shards/ headers: it uses include/ringcast/.
# Comments and string literals are stripped first, so prose about read() is not a violation.
# Prints one "file:line: what" per violation and exits 1 if there is any; `make
# check-layering` runs it. Usage: tools/check-layering.sh [repository root]
set -u -o pipefail
export LC_ALL=C
cd "${1:-$(dirname "$0")/..}" || exit 2

# Headers the core must not include: extended regular expressions on the path in <> or "".
CORE_FORBIDDEN_HEADERS='^(liburing\.h|liburing/.*|linux/io_uring\.h|pthread\.h|threads\.h'
CORE_FORBIDDEN_HEADERS+='|sys/socket\.h|netinet/.*|arpa/.*|netdb\.h|sys/un\.h|sys/epoll\.h'
CORE_FORBIDDEN_HEADERS+='|poll\.h|sys/poll\.h|sys/select\.h|sys/eventfd\.h|sys/timerfd\.h'
CORE_FORBIDDEN_HEADERS+='|sys/signalfd\.h|sys/mman\.h|unistd\.h|fcntl\.h|time\.h|sys/time\.h)$'

# Calls the core must not make (a name followed by "(", not a member or a longer name).
CORE_FORBIDDEN_CALLS='socket|socketpair|bind|listen|accept4?|connect|shutdown'
CORE_FORBIDDEN_CALLS+='|send|sendto|sendmsg|sendmmsg|recv|recvfrom|recvmsg|recvmmsg'
CORE_FORBIDDEN_CALLS+='|setsockopt|getsockopt|read|write|pread|pwrite|readv|writev'
CORE_FORBIDDEN_CALLS+='|open|openat|close|fopen|fdopen|freopen|mmap|munmap|ioctl|fcntl'
CORE_FORBIDDEN_CALLS+='|poll|ppoll|select|epoll_[a-z0-9_]+|eventfd|timerfd_[a-z_]+|pipe2?'
CORE_FORBIDDEN_CALLS+='|clock_gettime|gettimeofday|time|nanosleep|usleep|sleep|fork|syscall'
CORE_FORBIDDEN_CALLS+='|getrlimit|setrlimit|io_uring_[a-z0-9_]+|pthread_[a-z0-9_]+'
CORE_FORBIDDEN_CALLS+='|thrd_[a-z_]+'

violations=0 checked=0

# Prints the file with comments removed (newlines kept, so line numbers hold); with
# RC_STRIP_STRINGS=1 in the environment, string and character literals become "" and ''.
read -r -d '' STRIP_PERL <<'EOF'
my $blank = $ENV{RC_STRIP_STRINGS};
s{(/\*.*?\*/)|(//[^\n]*)|("(?:\\.|[^"\\\n])*")|('(?:\\.|[^'\\\n])*')}{
	defined $1 ? ($1 =~ tr/\n//cdr)
	: defined $2 ? ""
	: defined $3 ? ($blank ? '""' : $3)
	: ($blank ? "''" : $4)
}gse;
EOF

strip()
{
	perl -0777 -pe "$STRIP_PERL" "$1"
}

report()
{
	echo "$1:$2: ${*:3}"
	violations=$((violations + 1))
}

# True if a quoted include of $2 from file $1 resolves into shards/ rather than src/ or include/.
reaches_shards()
{
	local file=$1 path=$2
	case "$path" in
	shards/* | */shards/*) return 0 ;;
	esac
	[ -e "shards/$path" ] || return 1
	[ -e "$(dirname "$file")/$path" ] || [ -e "src/$path" ] || [ -e "include/$path" ] ||
		[ -e "$path" ] || return 0
	return 1
}

check_includes()
{
	local file=$1 core=$2 lineno text path
	while IFS=: read -r lineno text; do
		[[ "$text" =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*[\<\"]([^\>\"]+)[\>\"] ]] ||
			continue
		path=${BASH_REMATCH[1]}
		if reaches_shards "$file" "$path"; then
			report "$file" "$lineno" "includes \"$path\" from shards/ (the runtime's internals;" \
				"use src/ modules or include/ringcast/)"
		elif [ "$core" = 1 ] && [[ "$path" =~ ^(\.\./)*app/ ]]; then
			report "$file" "$lineno" "includes \"$path\" from src/app/ (the core must not" \
				"depend on the program)"
		elif [ "$core" = 1 ] && [[ "$path" =~ $CORE_FORBIDDEN_HEADERS ]]; then
			report "$file" "$lineno" "includes <$path> (src/ is sans-I/O: no io_uring," \
				"threads, sockets, file descriptors or clocks)"
		fi
	done < <(strip "$file" | grep -n -E '^[[:space:]]*#[[:space:]]*include')
}

check_calls()
{
	local file=$1 lineno text name
	while IFS=: read -r lineno text; do
		[[ "$text" =~ (^|[^A-Za-z0-9_.\>])($CORE_FORBIDDEN_CALLS)[[:space:]]*\( ]] || continue
		name=${BASH_REMATCH[2]}
		text=${text#"${text%%[![:space:]]*}"}
		report "$file" "$lineno" "calls $name() (src/ is sans-I/O: bytes and now_ms come in" \
			"as arguments): $text"
	done < <(RC_STRIP_STRINGS=1 strip "$file" | grep -n -E \
		"(^|[^A-Za-z0-9_.>])($CORE_FORBIDDEN_CALLS)[[:space:]]*\(")
}

main()
{
	local file
	[ -d src ] || {
		echo "check-layering: no src/ in $(pwd)" >&2
		exit 2
	}
	while IFS= read -r -d '' file; do
		checked=$((checked + 1))
		file=${file#./}
		case "$file" in
		src/app/*) check_includes "$file" 0 ;;
		*)
			check_includes "$file" 1
			check_calls "$file"
			;;
		esac
	done < <(find src -type f \( -name '*.c' -o -name '*.h' \) -print0 | sort -z)
	if [ "$violations" -gt 0 ]; then
		echo "check-layering: $violations violation(s) in $checked files (see ARCHITECTURE.md, Layers)"
		exit 1
	fi
	echo "check-layering: OK ($checked files under src/)"
}

main
