#!/usr/bin/env bash
# check-layering.sh: enforces the dependency rules of docs/architecture.md on the C sources.
#   src/ (the sans-I/O core, src/app/ excepted) includes nothing from shards/ or src/app/, no
#   I/O, thread, socket or clock headers, and calls no syscalls (I/O, sockets, clocks,
#   threads, io_uring): bytes and now_ms come in as arguments.
#   src/app/ (the program) never includes shards/ headers: it uses include/ringcast/.
#   shards/ (the runtime) stands in the layers of SHARD_LAYERS below: every file is in one
#   layer and includes shards/ headers of its own layer or lower ones only, so a lower layer
#   never calls up (it reaches higher ones through hooks); and no header include cycle.
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

# The runtime's layers, lowest first (docs/architecture.md, "Runtime layers"): the files of
# each. A file may include the shards/ headers of its own layer and of the layers before it.
SHARD_LAYERS=(
	"mpsc.h mpsc.c"                   # the inbox ring (leaf)
	"wheel.h wheel.c"                 # timing wheel (leaf)
	"clock.h clock.c"                 # the shard clock (leaf)
	"stats.h stats.c"                 # counters, close reasons (leaf)
	"runtime.h runtime.c"             # the shared types, the calling thread's shard
	"mem.h"                           # charging the memory budget
	"log.h log.c"
	"token.h token.c"                 # JWT keys (load, reload), what a connection's token said
	"tls_ctx.h tls_ctx.c"             # TLS certificates, reload, ticket keys
	"metrics.h metrics.c"             # Prometheus text of the counters
	"uring.h uring.c"                 # ring, SQEs, user_data, doorbells
	"bufring.h bufring.c"             # provided receive buffers
	"arena.h arena.c"                 # registered chunks for broadcast frames
	"outbox.h outbox.c"               # cross-shard posting
	"frame.h frame.c"                 # frames and their way home
	"redis_conn.h redis_conn.c"       # Redis links: connect, pipelined commands, replies
	"conn_rt.h conn.c"                # connection table: accept, recv, teardown
	"sendq.h sendq.c tls_rt.h tls_rt.c" # send queues, the turn's flush; TLS on the ring
	"sse_rt.h sse_rt.c"               # Server-Sent Events framing of what a stream is sent
	"session.h session.c"             # timers, close handshake, public send/close
	"input.h input.c"                 # WebSocket frames in
	"http_serve.h http_serve.c"       # HTTP until the upgrade; bytes' entry point
	"pubsub.h pubsub.c pubsub_int.h pubsub_users.c" # owners, fan-out, resume; presence
	"pubsub_redis.h pubsub_redis.c presence_redis.h presence_redis.c" # the Redis engine:
	                                  # publish, channels, syncs; presence and users across nodes
	"pubsub_proto.h pubsub_proto.c"   # the JSON protocol, POST /publish
	"api_serve.h api_serve.c"         # the server API (/api/...) on the protocol
	"memory.h memory.c"               # the budget in force: admission level, trims, shedding
	"shard.h shard.c"                 # the thread and its loop
	"app.c"                           # the application; wires the hooks
)

violations=0 checked=0 shard_files=0
declare -A LAYER_OF=() INCLUDES=() STATE=()

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

# The layer index of shards/ file $1 (basename), empty if it is in no layer.
layer_of()
{
	echo "${LAYER_OF[$1]:-}"
}

# Records shards/$1's quoted includes of shards/ headers as "name:line" words in INCLUDES.
scan_shard_includes()
{
	local name=$1 lineno text path list=""
	while IFS=: read -r lineno text; do
		[[ "$text" =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]] || continue
		path=${BASH_REMATCH[1]}
		[[ "$path" != */* && -e "shards/$path" ]] && list+="$path:$lineno "
	done < <(strip "shards/$name" | grep -n -E '^[[:space:]]*#[[:space:]]*include')
	INCLUDES[$name]=$list
}

check_shard_layers()
{
	local name own inc target lineno
	for name in $(printf '%s\n' "${!INCLUDES[@]}" | sort); do
		own=$(layer_of "$name")
		if [ -z "$own" ]; then
			report "shards/$name" 1 "is in no layer of SHARD_LAYERS (tools/check-layering.sh):" \
				"place it in the runtime's layer order"
			continue
		fi
		for inc in ${INCLUDES[$name]}; do
			target=${inc%:*} lineno=${inc##*:}
			[ -n "$(layer_of "$target")" ] || continue
			if [ "$(layer_of "$target")" -gt "$own" ]; then
				report "shards/$name" "$lineno" "includes \"$target\" from a higher layer" \
					"(a lower layer never calls up: invert it with a hook)"
			fi
		done
	done
}

# Depth-first search over the header include graph; reports each include closing a cycle.
visit()
{
	local name=$1 inc target
	STATE[$name]=open
	for inc in ${INCLUDES[$name]:-}; do
		target=${inc%:*}
		case "${STATE[$target]:-}" in
		open) report "shards/$name" "${inc##*:}" "includes \"$target\", which includes" \
			"this file (directly or not): an include cycle" ;;
		done) ;;
		*) visit "$target" ;;
		esac
	done
	STATE[$name]=done
}

check_shards()
{
	local i name file
	for i in "${!SHARD_LAYERS[@]}"; do
		for name in ${SHARD_LAYERS[$i]}; do
			LAYER_OF[$name]=$i
		done
	done
	while IFS= read -r -d '' file; do
		shard_files=$((shard_files + 1))
		scan_shard_includes "${file#shards/}"
	done < <(find shards -maxdepth 1 -type f \( -name '*.c' -o -name '*.h' \) -print0 | sort -z)
	check_shard_layers
	for name in $(printf '%s\n' "${!INCLUDES[@]}" | sort); do
		[ -z "${STATE[$name]:-}" ] && visit "$name"
	done
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
	[ -d shards ] && check_shards
	if [ "$violations" -gt 0 ]; then
		echo "check-layering: $violations violation(s) in $((checked + shard_files)) files" \
			"(see docs/architecture.md, Layering)"
		exit 1
	fi
	echo "check-layering: OK ($checked files under src/, $shard_files under shards/ in" \
		"${#SHARD_LAYERS[@]} layers)"
}

main
