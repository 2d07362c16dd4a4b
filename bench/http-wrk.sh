#!/usr/bin/env bash
# cratebouncer's HTTP side vs nginx and HAProxy as keep-alive TLS reverse proxies, in one
# invocation:
#   - a fast static HTTPS upstream: a second nginx (1 worker) that answers every request, POST
#     included, with a CrateDB-shaped JSON result, with a certificate for localhost signed by a
#     CA made here with openssl. It answers 401 unless the request carries the injected
#     Authorization header, and 400 to a crate-python request (/_sql?types=true) that lost its
#     Default-Schema header, so every proxy is checked to pass both;
#   - three proxies, plaintext HTTP on 127.0.0.1, each verifying the upstream against that CA
#     and injecting the same Authorization header: cratebouncer ([http], pool_size 16),
#     nginx (Debian's, 1 worker, upstream block with keepalive = wrk's connections, HTTP/1.1)
#     and HAProxy (Debian's, 1 thread, http-reuse always, ssl verify required);
#   - two workloads, each with wrk -t$THREADS -c$CLIENTS -d$DURATION --latency and keep-alive:
#     "select1" (POST /_sql {"stmt":"select 1"}, the figure this script always measured) and
#     "crate-python" (crate-python's own request mix: POST /_sql?types=true with Default-Schema,
#     small JSON bodies and gzip-compressed bodies of 8 KiB and more, Content-Encoding: gzip,
#     made as crate-python makes them), through each proxy in turn for $ROUNDS rounds (the order
#     rotates), plus one run straight to the upstream for orientation: req/s, p99 latency, the
#     CPU time per request of the proxy, the upstream and wrk, the upstream connections each run
#     opened, medians and the ratios cratebouncer/nginx, cratebouncer/haproxy and
#     cratebouncer/best of them.
#
#   bash bench/http-wrk.sh
#   DURATION=30 ROUNDS=5 bash bench/http-wrk.sh
#   WORKLOADS=crate-python bash bench/http-wrk.sh
#
# Figures are reported, never asserted: the exit status is non-zero only when something failed
# to run (a daemon did not start or died, a check request failed, a wrk run failed or saw
# errors or non-2xx responses). Helpers (ports, stopping, medians) come from bench/lib.sh.
# See bench/README.md.
set -euo pipefail

BENCH_NAME=http-wrk
CLIENTS=${CLIENTS:-50}              # wrk -c
POOL_SIZE=${POOL_SIZE:-16}          # [http] pool_size of cratebouncer
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WARMUP=${WARMUP:-2}                 # seconds of unreported wrk through each proxy first
NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-$CLIENTS}   # keepalive of nginx's upstream block
HAPROXY_THREADS=${HAPROXY_THREADS:-1}          # nbthread of HAProxy
WORKLOADS=${WORKLOADS:-select1 crate-python}   # which workloads, in this order
DIRECT=${DIRECT:-1}                 # 1: one wrk run per workload straight to the upstream
STRACE=${STRACE:-0}                 # 1: then one more run per proxy under strace -c: syscalls per request
STRACE_SECONDS=${STRACE_SECONDS:-5}
# crate-python's cycle of requests (per wrk connection): s1-s5 small JSON, g1-g3 gzip (make_mix)
MIX=${MIX:-s1 s2 s3 s4 s5 s2 g1 s3 g2 g3}
NGINX=${NGINX:-/usr/sbin/nginx}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
WRK=${WRK:-/usr/bin/wrk}
OPENSSL=${OPENSSL:-/usr/bin/openssl}
CURL=${CURL:-/usr/bin/curl}

PROXIES=(cratebouncer nginx haproxy)
HTTP_USER=crate
HTTP_PASSWORD=secret
RESULT='{"cols":["x"],"col_types":[9],"rows":[[1]],"rowcount":1,"duration":0.1}'
BODY='{"stmt":"select 1"}'
# What the upstream answers crate-python's requests: a small one gets a one-row result, a
# gzip-compressed one (a bulk insert or a long args list) a bulk result of 400 row counts.
MIX_RESULT='{"cols":["name"],"col_types":[4],"rows":[["crate"]],"rowcount":1,"duration":0.4}'
BULK_RESULT='{"cols":[],"duration":2.5,"results":['$(printf '{"rowcount":1},%.0s' {1..399})'{"rowcount":1}]}'
BULK_HALF=$((${#BULK_RESULT} / 2))

NGX_PID=""      # the proxying nginx's master
UP_PID=""       # the upstream nginx's master
HAP_PID=""
WRK_PID=""
declare -a NGX_WORKERS=() UP_WORKERS=()

http_cleanup() {
	local rc=$? pid cmd=$BASH_COMMAND
	trap - EXIT INT TERM
	unexpected_exit "$rc" "$cmd"
	stop_pid "$WRK_PID" wrk
	stop_pid "$CB_PID" cratebouncer
	stop_pid "$HAP_PID" haproxy
	stop_pid "$NGX_PID" nginx
	stop_pid "$UP_PID" "upstream nginx"
	wait 2>/dev/null || true
	# workers left behind by a master that had to be killed
	for pid in "${NGX_WORKERS[@]}" "${UP_WORKERS[@]}"; do
		[[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q '^nginx: worker' &&
			stop_pid "$pid" "nginx worker"
	done
	finish_work "$rc"
}

http_init() {
	local exe w
	for exe in "$PY" "$CRATEBOUNCER" "$NGINX" "$HAPROXY" "$WRK" "$OPENSSL" "$CURL"; do
		[[ -x $exe ]] || die "$exe not found or not executable (cratebouncer: cd $ROOT && make src/cratebouncer;" \
			"the others: apt-get install nginx haproxy wrk openssl curl)"
	done
	[[ $DURATION =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[0-9]+$ &&
		$POOL_SIZE =~ ^[1-9][0-9]*$ && $NGINX_KEEPALIVE =~ ^[1-9][0-9]*$ &&
		$HAPROXY_THREADS =~ ^[1-9][0-9]*$ && $CLIENTS =~ ^[1-9][0-9]*$ && $THREADS =~ ^[1-9][0-9]*$ ]] ||
		die "DURATION, ROUNDS, POOL_SIZE, NGINX_KEEPALIVE, HAPROXY_THREADS, CLIENTS and THREADS must be" \
			"positive integers, WARMUP an integer"
	[[ -n ${WORKLOADS// /} ]] || die "WORKLOADS is empty"
	for w in $WORKLOADS; do
		[[ $w == select1 || $w == crate-python ]] || die "WORKLOADS: \"$w\" is not select1 or crate-python"
	done
	[[ -n ${MIX// /} ]] || die "MIX is empty"
	for w in $MIX; do
		[[ $w =~ ^(s[1-5]|g[1-3])$ ]] || die "MIX: \"$w\" is not one of s1 to s5, g1 to g3"
	done
	WORK=$(mktemp -d /tmp/cb-bench-http.XXXXXX)
	chmod 755 "$WORK"   # nginx's workers run as nobody when we are root
	trap http_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# The binary under test may be rebuilt while this runs: run a copy, the same one throughout.
	CB_BIN=$WORK/cratebouncer
	cp "$CRATEBOUNCER" "$CB_BIN"
}

# ---------------------------------------------------------------------------------------------
# A CA and a certificate for localhost.

make_certs() {
	local d=$WORK/tls
	mkdir -p "$d"
	{
		"$OPENSSL" req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cratebouncer bench CA" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
			-keyout "$d/ca.key" -out "$d/ca.crt" &&
		"$OPENSSL" req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
			-keyout "$d/server.key" -out "$d/server.csr" &&
		printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
			"keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$d/server.ext" &&
		"$OPENSSL" x509 -req -days 2 -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
			-CAcreateserial -extfile "$d/server.ext" -out "$d/server.crt"
	} >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; die "making the test CA and certificate failed"; }
	CA=$d/ca.crt
}

# ---------------------------------------------------------------------------------------------
# The workloads: a wrk Lua script each, through a proxy and (with the credentials) direct.

# crate-python's request mix. The bodies are made as crate-python 2.x makes them: compact JSON
# (orjson), and gzip.compress(body, compresslevel=6) with Content-Encoding: gzip once the JSON
# is 8192 bytes or more (its default compress threshold). Headers as urllib3 2.8 sends them,
# without Authorization/X-User (through a sidecar the client sends no credentials).
make_mix() {
	local d=$WORK/mix
	mkdir -p "$d"
	"$PY" - "$d" "$MIX" <<'EOF' >"$WORK/mix.txt"
import gzip, json, random, sys
d = sys.argv[1]
rnd = random.Random(12)
def dumps(o):
    return json.dumps(o, separators=(",", ":")).encode()
small = {
    "s1": {"stmt": "SELECT name FROM sys.cluster"},
    "s2": {"stmt": "SELECT id, name, value FROM doc.t WHERE id = ?", "args": [42]},
    "s3": {"stmt": "INSERT INTO doc.t (id, name, value) VALUES (?, ?, ?)", "args": [7, "name-7", 10.5]},
    "s4": {"stmt": "UPDATE doc.t SET value = value + ? WHERE id = ?", "args": [1.5, 42]},
    "s5": {"stmt": "SELECT count(*) FROM doc.t WHERE name LIKE ?", "args": ["name-%"]},
}
big = {
    # cursor.executemany(): a bulk insert of 400 short rows
    "g1": {"stmt": "INSERT INTO doc.t (id, name, value) VALUES (?, ?, ?)",
           "bulk_args": [[i, "name-%d" % i, i * 1.5] for i in range(400)]},
    # one long args list: 2000 ids for ANY(?)
    "g2": {"stmt": "SELECT id, name, value FROM doc.t WHERE id = ANY(?)",
           "args": [[rnd.randrange(10**9) for _ in range(2000)]]},
    # a bulk insert of 300 sensor readings: compressed still over 8 KiB
    "g3": {"stmt": "INSERT INTO doc.readings (id, ts, sensor, value, tags) VALUES (?, ?, ?, ?, ?)",
           "bulk_args": [["%032x" % rnd.getrandbits(128), 1764700000000 + rnd.randrange(10**7),
                          "sensor-%d" % rnd.randrange(500), round(rnd.uniform(-40, 60), 6),
                          rnd.sample(["indoor", "outdoor", "battery", "mains", "calibrated", "beta"], 2)]
                         for _ in range(300)]},
}
# one cycle per wrk connection (MIX; by default 10 requests: 7 small, 3 compressed)
order = sys.argv[2].split()
desc = []
for name, obj in list(small.items()) + list(big.items()):
    raw = dumps(obj)
    gz = len(raw) >= 8192
    data = gzip.compress(raw, compresslevel=6) if gz else raw
    assert gz == name.startswith("g"), (name, len(raw))
    with open("%s/%s.body" % (d, name), "wb") as f:
        f.write(data)
    desc.append((name, len(raw), len(data), gz))
print(" ".join(order))
print(" ".join(n for n, _, _, gz in desc if gz))
s = [x for x in desc if not x[3]]
g = [x for x in desc if x[3]]
print("a cycle of %d requests (%s): %d with a small JSON body (%s bytes), %d gzip (%s)" % (
    len(order), " ".join(order), sum(1 for o in order if o.startswith("s")),
    "/".join(str(x[1]) for x in s), sum(1 for o in order if o.startswith("g")),
    ", ".join("%s %.1f KiB -> %.1f KiB" % (x[0], x[1] / 1024, x[2] / 1024) for x in g)))
EOF
	MIX_ORDER=$(sed -n 1p "$WORK/mix.txt")
	MIX_GZIP=$(sed -n 2p "$WORK/mix.txt")
	MIX_DESC=$(sed -n 3p "$WORK/mix.txt")
}

mix_lua() {  # mix_lua [AUTHORIZATION]: the wrk script of the crate-python mix
	local o q=""
	for o in $MIX_ORDER; do q+="\"$o\", "; done
	local g=""
	for o in $MIX_GZIP; do g+="$o = true, "; done
	cat <<EOF
-- crate-python's request mix (bench/http-wrk.sh). Every wrk connection sends the cycle below in
-- turn; the threads start at different places in it.
local dir = "$WORK/mix"
local order = { $q}
local gzipped = { $g}
local auth = "${1:-}"
local reqs, n, i = {}, 0, 0
local next_thread = 0

function setup(thread)
   thread:set("start", next_thread)
   next_thread = next_thread + 3
end

function init(args)
   for k, name in ipairs(order) do
      local f = assert(io.open(dir .. "/" .. name .. ".body", "rb"))
      local body = f:read("*a")
      f:close()
      local h = {
         ["User-Agent"] = "python-urllib3/2.8.0",
         ["Accept-Encoding"] = "gzip, deflate",
         ["Default-Schema"] = "doc",
         ["Accept"] = "application/json",
         ["Content-Type"] = "application/json",
      }
      if gzipped[name] then h["Content-Encoding"] = "gzip" end
      if auth ~= "" then h["Authorization"] = auth end
      reqs[k] = wrk.format("POST", "/_sql?types=true", h, body)
   end
   n = #reqs
   i = (start or 0) % n
end

function request()
   i = i % n + 1
   return reqs[i]
end
EOF
}

select1_lua() {  # select1_lua [AUTHORIZATION]: the wrk script of POST /_sql {"stmt":"select 1"}
	cat <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
EOF
	[[ -z ${1:-} ]] || echo "wrk.headers[\"Authorization\"] = \"$1\""
}

write_workloads() {
	make_mix
	select1_lua >"$WORK/select1.lua"
	select1_lua "$AUTH" >"$WORK/select1-direct.lua"
	mix_lua >"$WORK/crate-python.lua"
	mix_lua "$AUTH" >"$WORK/crate-python-direct.lua"
}

wl_path() { if [[ $1 == select1 ]]; then echo /_sql; else echo "/_sql?types=true"; fi; }
wl_desc() {
	if [[ $1 == select1 ]]; then
		echo "POST /_sql $BODY"
	else
		echo "crate-python's mix: POST /_sql?types=true, Default-Schema: doc, $MIX_DESC"
	fi
}

# ---------------------------------------------------------------------------------------------
# The two nginx instances, HAProxy and cratebouncer. Sets *_PORT.

nginx_common() {  # nginx_common DIR: the main-context lines both nginx configs share
	local dir=$1
	mkdir -p "$dir/tmp"
	echo "worker_processes 1;"
	[[ $(id -u) -ne 0 ]] || echo "user nobody nogroup;"
	cat <<EOF
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
EOF
}

nginx_http_common() {  # nginx_http_common DIR: the http-context lines both share
	local dir=$1
	cat <<EOF
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    # the bodies stay in memory (the default, 16k, would put the biggest ones in a file)
    client_body_buffer_size 64k;
    # wrk's and the proxies' connections stay open for the whole run
    keepalive_requests 1000000;
    keepalive_timeout 300s;
EOF
}

write_configs_http() {
	local d
	UP_PORT=$(free_port)
	STATUS_PORT=$(free_port)
	CB_PORT=$(free_port)
	CB_PG_PORT=$(free_port)
	NGX_PORT=$(free_port)
	HAP_PORT=$(free_port)
	[[ $(printf '%s\n' "$UP_PORT" "$STATUS_PORT" "$CB_PORT" "$CB_PG_PORT" "$NGX_PORT" "$HAP_PORT" |
		sort -u | wc -l) == 6 ]] ||
		write_configs_http   # a port came twice: again
	AUTH="Basic $(printf '%s:%s' "$HTTP_USER" "$HTTP_PASSWORD" | base64 -w 0)"

	# The upstream: every request to the TLS server, whatever its method, gets the JSON (or 401
	# without the injected credentials, or 400 for a /_sql?types=true request without
	# Default-Schema: doc). stub_status on a plaintext port counts its connections.
	d=$WORK/upstream
	mkdir -p "$d"
	{
		nginx_common "$d"
		echo "http {"
		nginx_http_common "$d"
		cat <<EOF
    map "\$arg_types:\$http_default_schema" \$lost_schema {
        "true:doc" 0;
        "~^true:" 1;
        default 0;
    }
    # (in two halves: nginx takes no config token over 4 kB)
    map \$http_content_encoding \$result1 {
        gzip '${BULK_RESULT:0:BULK_HALF}';
        default '';
    }
    map \$http_content_encoding \$result2 {
        gzip '${BULK_RESULT:BULK_HALF}';
        default '$MIX_RESULT';
    }
    server {
        listen 127.0.0.1:$UP_PORT ssl;
        server_name localhost;
        ssl_certificate $WORK/tls/server.crt;
        ssl_certificate_key $WORK/tls/server.key;
        ssl_session_cache shared:upstream:1m;
        location / {
            default_type application/json;
            if (\$http_authorization != "$AUTH") {
                return 401 '{"error":{"message":"missing credentials","code":4011}}';
            }
            if (\$lost_schema) {
                return 400 '{"error":{"message":"Default-Schema lost","code":4000}}';
            }
            if (\$arg_types = "true") {
                return 200 "\$result1\$result2";
            }
            return 200 '$RESULT';
        }
    }
    server {
        listen 127.0.0.1:$STATUS_PORT;
        location / { stub_status; }
    }
}
EOF
	} >"$d/nginx.conf"

	# The proxying nginx: the keep-alive upstream block and verified TLS.
	d=$WORK/nginx
	mkdir -p "$d"
	{
		nginx_common "$d"
		echo "http {"
		nginx_http_common "$d"
		cat <<EOF
    upstream crate {
        server 127.0.0.1:$UP_PORT;
        keepalive $NGINX_KEEPALIVE;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass https://crate;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host localhost:$UP_PORT;
            proxy_set_header Authorization "$AUTH";
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $CA;
            proxy_ssl_server_name on;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF
	} >"$d/nginx.conf"
	chmod 600 "$d/nginx.conf"   # it holds the credentials

	# HAProxy: keep-alive both sides, idle server connections shared by all clients
	# (http-reuse always), verified TLS with SNI.
	d=$WORK/haproxy
	mkdir -p "$d"
	cat >"$d/haproxy.cfg" <<EOF
global
    nbthread $HAPROXY_THREADS
    maxconn 4096

defaults
    mode http
    timeout connect 10s
    timeout client 300s
    timeout server 300s
    timeout http-request 10s
    timeout http-keep-alive 300s

frontend fe
    bind 127.0.0.1:$HAP_PORT
    default_backend crate

backend crate
    http-reuse always
    http-request set-header Host localhost:$UP_PORT
    http-request set-header Authorization "$AUTH"
    server crate 127.0.0.1:$UP_PORT ssl verify required ca-file $CA sni str(localhost) verifyhost localhost pool-purge-delay 300s
EOF
	chmod 600 "$d/haproxy.cfg"

	# cratebouncer: no databases, only the HTTP side.
	d=$WORK/cb
	mkdir -p "$d"
	cat >"$d/cratebouncer.ini" <<EOF
[databases]

[cratebouncer]
listen_addr = 127.0.0.1
listen_port = $CB_PG_PORT
unix_socket_dir =
auth_type = trust
logfile = $d/cratebouncer.log
pidfile = $d/cratebouncer.pid

[http]
listen_addr = 127.0.0.1
listen_port = $CB_PORT
upstream = https://localhost:$UP_PORT
user = $HTTP_USER
password = $HTTP_PASSWORD
pool_size = $POOL_SIZE
tls_sslmode = verify-full
tls_ca_file = $CA
EOF
	chmod 600 "$d/cratebouncer.ini"   # it holds a password (cratebouncer warns otherwise)
	write_workloads
}

nginx_workers() {  # nginx_workers MASTER_PID: the pids of its children
	ps -o pid= --ppid "$1" | tr -d ' '
}

start_nginx() {  # start_nginx DIR PORT NAME: sets STARTED_PID
	local dir=$1 port=$2 name=$3
	"$NGINX" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' >>"$dir/stderr.log" 2>&1 &
	STARTED_PID=$!
	wait_listen "$port" "$STARTED_PID" "$name" "$dir/error.log" "$dir/stderr.log"
}

start_all() {
	start_nginx "$WORK/upstream" "$UP_PORT" "upstream nginx"
	UP_PID=$STARTED_PID
	wait_listen "$STATUS_PORT" "$UP_PID" "upstream nginx" "$WORK/upstream/error.log" "$WORK/upstream/stderr.log"
	mapfile -t UP_WORKERS < <(nginx_workers "$UP_PID")
	((${#UP_WORKERS[@]} == 1)) || die "the upstream nginx has ${#UP_WORKERS[@]} workers, expected 1"
	start_nginx "$WORK/nginx" "$NGX_PORT" nginx
	NGX_PID=$STARTED_PID
	mapfile -t NGX_WORKERS < <(nginx_workers "$NGX_PID")
	((${#NGX_WORKERS[@]} == 1)) || die "nginx has ${#NGX_WORKERS[@]} workers, expected 1"
	# -db: in the foreground, one process (its threads are counted together)
	"$HAPROXY" -db -f "$WORK/haproxy/haproxy.cfg" >>"$WORK/haproxy/stderr.log" 2>&1 &
	HAP_PID=$!
	wait_listen "$HAP_PORT" "$HAP_PID" haproxy "$WORK/haproxy/stderr.log"
	"$CB_BIN" -q "$WORK/cb/cratebouncer.ini" >>"$WORK/cb/stderr.log" 2>&1 &
	CB_PID=$!
	wait_listen "$CB_PORT" "$CB_PID" cratebouncer "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log"
}

proxy_port() {
	case $1 in
	cratebouncer) echo "$CB_PORT" ;;
	nginx) echo "$NGX_PORT" ;;
	haproxy) echo "$HAP_PORT" ;;
	esac
}
proxy_url() {  # proxy_url NAME WORKLOAD
	if [[ $1 == direct ]]; then
		echo "https://localhost:$UP_PORT$(wl_path "$2")"
	else
		echo "http://127.0.0.1:$(proxy_port "$1")$(wl_path "$2")"
	fi
}
proxy_pids() {
	case $1 in
	cratebouncer) echo "$CB_PID" ;;
	nginx) echo "$NGX_PID" "${NGX_WORKERS[@]}" ;;
	haproxy) echo "$HAP_PID" ;;
	direct) echo "" ;;
	esac
}
proxy_logs() {
	case $1 in
	cratebouncer) echo "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log" ;;
	nginx) echo "$WORK/nginx/error.log" "$WORK/nginx/stderr.log" ;;
	haproxy) echo "$WORK/haproxy/stderr.log" ;;
	*) echo "$WORK/upstream/error.log" "$WORK/upstream/stderr.log" ;;
	esac
}

check_post() {  # check_post NAME URL EXPECTED [curl options...]: one POST must give 200 and EXPECTED
	local name=$1 url=$2 want=$3 got
	shift 3
	if ! got=$("$CURL" -sS --max-time 20 -o "$WORK/check.out" -w '%{http_code}' "$@" \
		-X POST -H 'Content-Type: application/json' "$url" 2>&1) ||
		[[ $got != 200 || $(<"$WORK/check.out") != "$want" ]]; then
		echo "status: $got, body: $(head -c 500 "$WORK/check.out" 2>/dev/null)" >&2
		# shellcheck disable=SC2046  # paths without spaces
		log_tail $(proxy_logs "$name")
		die "POST $url through $name failed"
	fi
}

check_one() {  # check_one NAME URL-PREFIX [curl options...]: select 1, and a small and a gzip request of the mix
	local name=$1 base=$2 g
	shift 2
	check_post "$name" "$base/_sql" "$RESULT" "$@" --data "$BODY"
	check_post "$name" "$base/_sql?types=true" "$MIX_RESULT" "$@" -H 'Default-Schema: doc' \
		--data-binary "@$WORK/mix/s2.body"
	for g in $MIX_GZIP; do
		check_post "$name" "$base/_sql?types=true" "$BULK_RESULT" "$@" -H 'Default-Schema: doc' \
			-H 'Content-Encoding: gzip' --data-binary "@$WORK/mix/$g.body"
	done
}

check_all() {
	local name got
	check_one upstream "https://localhost:$UP_PORT" --cacert "$CA" -H "Authorization: $AUTH"
	# the upstream does refuse what lacks the credentials or the schema
	got=$("$CURL" -sS --max-time 20 -o /dev/null -w '%{http_code}' --cacert "$CA" -X POST \
		--data "$BODY" "https://localhost:$UP_PORT/_sql" 2>&1) || true
	[[ $got == 401 ]] || die "the upstream answers $got, not 401, without credentials"
	got=$("$CURL" -sS --max-time 20 -o /dev/null -w '%{http_code}' --cacert "$CA" -X POST \
		-H "Authorization: $AUTH" --data "$BODY" "https://localhost:$UP_PORT/_sql?types=true" 2>&1) || true
	[[ $got == 400 ]] || die "the upstream answers $got, not 400, to /_sql?types=true without Default-Schema"
	for name in "${PROXIES[@]}"; do
		check_one "$name" "http://127.0.0.1:$(proxy_port "$name")"
	done
}

check_alive() {  # 0 if every daemon still runs; otherwise their logs and 1
	local ok=0 pid
	for pid in "$UP_PID" "${UP_WORKERS[@]}"; do
		kill -0 "$pid" 2>/dev/null && continue
		log_tail "$WORK/upstream/error.log" "$WORK/upstream/stderr.log"
		warn "the upstream nginx (pid $pid) died"
		ok=1
		break
	done
	for pid in "$NGX_PID" "${NGX_WORKERS[@]}"; do
		kill -0 "$pid" 2>/dev/null && continue
		log_tail "$WORK/nginx/error.log" "$WORK/nginx/stderr.log"
		warn "nginx (pid $pid) died"
		ok=1
		break
	done
	if ! kill -0 "$HAP_PID" 2>/dev/null; then
		log_tail "$WORK/haproxy/stderr.log"
		warn "haproxy died"
		ok=1
	fi
	if ! kill -0 "$CB_PID" 2>/dev/null; then
		log_tail "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log"
		warn "cratebouncer died"
		ok=1
	fi
	return $ok
}

# ---------------------------------------------------------------------------------------------
# wrk runs.

ticks_of() {  # ticks_of PID...: their user + system CPU ticks together ("-" if one is gone)
	local pid sum=0 t
	for pid in "$@"; do
		t=$(cpu_ticks "$pid" 2>/dev/null) || t=""
		if [[ ! $t =~ ^[0-9]+$ ]]; then
			echo -
			return
		fi
		sum=$((sum + t))
	done
	echo "$sum"
}

host_busy() {  # "busy total" jiffies of all CPUs so far (/proc/stat)
	awk '$1 == "cpu" {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit}' /proc/stat
}

upstream_accepts() {  # connections the upstream accepted so far (stub_status; nothing if it fails)
	{ "$CURL" -sS --max-time 10 "http://127.0.0.1:$STATUS_PORT/" 2>/dev/null || true; } | awk 'NR == 3 {print $1}'
}

CHILD_MS=0
child_ms() {  # sets CHILD_MS: CPU milliseconds (user + system) of the children this shell waited for
	# Not to be called in $(...): a subshell's children are its own. No fork here either.
	local u s t min sec
	times >"$WORK/times.txt"
	{ read -r _ _; read -r u s; } <"$WORK/times.txt"
	CHILD_MS=0
	for t in "$u" "$s"; do   # 1m2.345s
		min=${t%%m*} sec=${t#*m}
		sec=${sec%s}
		CHILD_MS=$((CHILD_MS + 10#$min * 60000 + 10#${sec/./}))
	done
}

RPS="" P99="" CPU_US="" UP_US="" WRK_US="" UP_CPU="" HOST_CPU="" UP_CONNS="" RUN_OK=1 RUN_ERROR=""
through() {  # through NAME WORKLOAD TAG SECONDS: one wrk run (NAME direct: to the upstream)
	# Sets RPS, P99 (ms), CPU_US (the proxy's CPU per request), UP_US and WRK_US (the upstream
	# worker's and wrk's), UP_CPU (the upstream worker's busy share of one core, %), HOST_CPU
	# (all cores' busy share, %), UP_CONNS, RUN_OK, RUN_ERROR.
	local name=$1 wl=$2 tag=$3 secs=$4 out rc=0 t0 t1 u0 u1 a0 a1 h0 h1 e0 e1 w0 w1 n non2xx errs script
	local -a pids
	read -r -a pids <<<"$(proxy_pids "$name")"
	out=$WORK/wrk-$wl-$name-$tag.log
	script=$WORK/$wl.lua
	[[ $name != direct ]] || script=$WORK/$wl-direct.lua
	RUN_OK=1 RUN_ERROR=""
	a0=$(upstream_accepts)
	t0=$( ((${#pids[@]})) && ticks_of "${pids[@]}" || echo -)
	u0=$(ticks_of "${UP_WORKERS[@]}")
	h0=$(host_busy)
	local url
	url=$(proxy_url "$name" "$wl")
	child_ms
	w0=$CHILD_MS
	e0=$EPOCHREALTIME
	timeout -k 10 $((secs + 60)) "$WRK" -t"$THREADS" -c"$CLIENTS" -d"$secs"s --latency \
		-s "$script" "$url" >"$out" 2>&1 &
	WRK_PID=$!
	wait "$WRK_PID" || rc=$?
	WRK_PID=""
	e1=$EPOCHREALTIME
	child_ms
	w1=$CHILD_MS
	h1=$(host_busy)
	u1=$(ticks_of "${UP_WORKERS[@]}")
	t1=$( ((${#pids[@]})) && ticks_of "${pids[@]}" || echo -)
	a1=$(upstream_accepts)
	RPS=$(awk '$1 == "Requests/sec:" {printf "%.1f", $2}' "$out")
	# "99%  3.21ms": to milliseconds
	P99=$(awk '$1 == "99%" {v = $2; u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
		f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
		if (f > 0) printf "%.2f", v * f}' "$out")
	n=$(awk '$2 == "requests" && $3 == "in" {print $1}' "$out")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
	errs=$(grep -m 1 'Socket errors:' "$out" | sed 's/^ *//' || true)
	if ((rc != 0)); then
		RUN_ERROR="wrk exited with status $rc"
	elif [[ -z $RPS || -z $n || -z $P99 ]]; then
		RUN_ERROR="no figures in wrk's output"
	elif [[ -n $non2xx ]]; then
		RUN_ERROR="$non2xx non-2xx/3xx responses of $n"
	elif [[ -n $errs ]]; then
		RUN_ERROR="$errs"
	fi
	if [[ -n $RUN_ERROR ]]; then
		RUN_OK=0
		RPS=- P99=-
	fi
	local hz
	hz=$(getconf CLK_TCK)
	CPU_US=$(awk -v a="$t0" -v b="$t1" -v n="${n:-0}" -v hz="$hz" \
		'BEGIN {if (n > 0 && a != "-" && b != "-") printf "%.1f", (b - a) * 1e6 / hz / n; else print "-"}')
	UP_US=$(awk -v a="$u0" -v b="$u1" -v n="${n:-0}" -v hz="$hz" \
		'BEGIN {if (n > 0 && a != "-" && b != "-") printf "%.1f", (b - a) * 1e6 / hz / n; else print "-"}')
	WRK_US=$(awk -v a="$w0" -v b="$w1" -v n="${n:-0}" \
		'BEGIN {if (n > 0) printf "%.1f", (b - a) * 1e3 / n; else print "-"}')
	UP_CPU=$(awk -v a="$u0" -v b="$u1" -v e0="$e0" -v e1="$e1" -v hz="$hz" \
		'BEGIN {if (a != "-" && b != "-" && e1 > e0) printf "%.0f", (b - a) * 100 / hz / (e1 - e0); else print "-"}')
	HOST_CPU=$(awk -v a="$h0" -v b="$h1" 'BEGIN {split(a, x, " "); split(b, y, " ")
		if (y[2] > x[2]) printf "%.0f", (y[1] - x[1]) * 100 / (y[2] - x[2]); else print "-"}')
	if [[ $a0 =~ ^[0-9]+$ && $a1 =~ ^[0-9]+$ ]]; then
		UP_CONNS=$((a1 - a0 - 1))   # less the stub_status request itself
	else
		UP_CONNS=-
	fi
}

run_failed() {  # run_failed NAME WORKLOAD TAG: report the last run as a failure
	local -a logs
	read -r -a logs <<<"$(proxy_logs "$1")"
	warn "wrk ($2) through $1 failed: $RUN_ERROR"
	sed 's/^/    /' "$WORK/wrk-$2-$1-$3.log" | head -n 30 >&2
	log_tail "${logs[@]}"
	FAILED=1
}

median_fmt() {  # median_fmt FORMAT VALUES...: like lib.sh's median, printed with FORMAT
	printf '%s\n' "${@:2}" | grep -E '^[0-9.]+$' | sort -g |
		awk -v f="$1" '{v[NR] = $1} END {if (!NR) print "-"; else if (NR % 2) printf f "\n", v[(NR + 1) / 2]; else printf f "\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

spread() {  # spread VALUES...: (max - min) / median in %, "-" with fewer than 2 numbers
	printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g |
		awk '{v[NR] = $1} END {if (NR < 2) {print "-"; exit}
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			if (m > 0) printf "%.0f%%\n", (v[NR] - v[1]) * 100 / m; else print "-"}'
}

row() { printf '%-6s %-13s %9s %7s %8s %6s %6s %5s %6s %5s %s\n' "$@"; }

# The rounds of one workload through the three proxies, medians, spreads and the three ratios.
proxy_rounds() {  # proxy_rounds WORKLOAD
	local wl=$1 r k name best
	local -A rps p99 cpu upus wrkus upc hostc conns med mp99 mcpu mup mwrk
	local -a order
	echo
	echo "== $wl: wrk -t$THREADS -c$CLIENTS -d${DURATION}s --latency, keep-alive; $(wl_desc "$wl")"
	echo "   (cratebouncer pool_size $POOL_SIZE, nginx keepalive $NGINX_KEEPALIVE, haproxy http-reuse always" \
		"nbthread $HAPROXY_THREADS; all verify-full TLS to the upstream)"
	row round proxy req/s "p99 ms" "proxy us" "up us" "wrk us" "up %" "host %" conns ""
	if ((DIRECT)); then
		through direct "$wl" 1 "$DURATION"
		((RUN_OK)) || run_failed direct "$wl" 1
		row - "direct (TLS)" "$RPS" "$P99" - "$UP_US" "$WRK_US" "$UP_CPU" "$HOST_CPU" "$UP_CONNS" ""
	fi
	for ((r = 1; r <= ROUNDS; r++)); do
		# Rotate which proxy goes first, so a drift over time favours none.
		order=()
		for ((k = 0; k < ${#PROXIES[@]}; k++)); do
			order+=("${PROXIES[(k + r - 1) % ${#PROXIES[@]}]}")
		done
		for name in "${order[@]}"; do
			through "$name" "$wl" "$r" "$DURATION"
			((RUN_OK)) || run_failed "$name" "$wl" "$r"
			rps[$name]+=" $RPS" p99[$name]+=" $P99" cpu[$name]+=" $CPU_US" upc[$name]+=" $UP_CPU"
			upus[$name]+=" $UP_US" wrkus[$name]+=" $WRK_US" hostc[$name]+=" $HOST_CPU" conns[$name]+=" $UP_CONNS"
			row "$r" "$name" "$RPS" "$P99" "$CPU_US" "$UP_US" "$WRK_US" "$UP_CPU" "$HOST_CPU" "$UP_CONNS" ""
		done
		check_alive || die "a daemon died during the wrk runs"
	done
	for name in "${PROXIES[@]}"; do
		# shellcheck disable=SC2086  # the lists are space-separated on purpose
		{
			med[$name]=$(median ${rps[$name]})
			mp99[$name]=$(median_fmt %.2f ${p99[$name]})
			mcpu[$name]=$(median ${cpu[$name]})
			mup[$name]=$(median ${upus[$name]})
			mwrk[$name]=$(median ${wrkus[$name]})
			row median "$name" "${med[$name]}" "${mp99[$name]}" "${mcpu[$name]}" "${mup[$name]}" \
				"${mwrk[$name]}" "$(median_fmt %.0f ${upc[$name]})" "$(median_fmt %.0f ${hostc[$name]})" \
				"$(median_fmt %.0f ${conns[$name]})" "req/s spread $(spread ${rps[$name]})"
		}
	done
	echo "(spread: (max - min) / median of the req/s over the $ROUNDS rounds)"
	# The req/s the three would get with the cores to themselves goes as 1 / (wrk + proxy +
	# upstream CPU per request): that ratio, steadier than req/s when something else runs.
	local -A cost
	for name in "${PROXIES[@]}"; do
		cost[$name]=$(awk -v w="${mwrk[$name]}" -v u="${mup[$name]}" -v p="${mcpu[$name]}" \
			'BEGIN {if (w ~ /^[0-9.]+$/ && u ~ /^[0-9.]+$/ && p ~ /^[0-9.]+$/) printf "%.1f", w + u + p; else print "-"}')
	done
	for name in nginx haproxy; do
		printf 'ratio cratebouncer/%-8s = %s  (p99 %s ms vs %s ms; by CPU per request %s)\n' "$name" \
			"$(ratio "${med[cratebouncer]}" "${med[$name]}")" "${mp99[cratebouncer]}" "${mp99[$name]}" \
			"$(ratio "${cost[$name]}" "${cost[cratebouncer]}")"
	done
	best=nginx
	if [[ ${med[haproxy]} =~ ^[0-9.]+$ ]] &&
		{ [[ ! ${med[nginx]} =~ ^[0-9.]+$ ]] || awk -v a="${med[haproxy]}" -v b="${med[nginx]}" 'BEGIN {exit !(a > b)}'; }; then
		best=haproxy
	fi
	local p99ok=n/a
	if [[ ${mp99[cratebouncer]} =~ ^[0-9.]+$ && ${mp99[$best]} =~ ^[0-9.]+$ ]]; then
		p99ok=$(awk -v a="${mp99[cratebouncer]}" -v b="${mp99[$best]}" 'BEGIN {print (a <= b) ? "equal or lower" : "higher"}')
	fi
	local target=""
	[[ $wl != crate-python ]] || target="  (target >= 1.3 at equal or lower p99)"
	printf 'ratio cratebouncer/best     = %s  (best: %s; p99 %s ms vs %s ms: %s; by CPU per request %s)%s\n' \
		"$(ratio "${med[cratebouncer]}" "${med[$best]}")" "$best" "${mp99[cratebouncer]}" "${mp99[$best]}" \
		"$p99ok" "$(ratio "${cost[$best]}" "${cost[cratebouncer]}")" "$target"
	# With the cores saturated, req/s goes as 1 / (wrk + proxy + upstream CPU per request): a
	# proxy that took no CPU at all would get at most this much more than the best peer here.
	awk -v w="${mwrk[$best]}" -v u="${mup[$best]}" -v p="${mcpu[$best]}" -v b="$best" -v c="${cost[cratebouncer]}" 'BEGIN {
		if (w ~ /^[0-9.]+$/ && u ~ /^[0-9.]+$/ && p ~ /^[0-9.]+$/ && w + u > 0)
			printf "(by CPU per request: wrk + proxy + upstream = %s us for cratebouncer, %s us for %s; a proxy taking no CPU would reach %.2fx %s)\n", c, w + p + u, b, (w + p + u) / (w + u), b}'
}

syscall_profile() {  # syscall_profile WORKLOAD: one wrk run per proxy under strace -c -f
	# Not part of the figures above (strace slows what it traces): what each proxy asks of the
	# kernel per request, which is most of its CPU time on loopback.
	local wl=$1 name out n trace spid
	local -a pids args
	echo
	echo "== $wl: system calls per request (strace -c -f, a ${STRACE_SECONDS}s wrk run through each, not timed)"
	for name in "${PROXIES[@]}"; do
		read -r -a pids <<<"$(proxy_pids "$name")"
		args=()
		for spid in "${pids[@]}"; do args+=(-p "$spid"); done
		trace=$WORK/strace-$wl-$name.txt
		strace -f -c -q -o "$trace" "${args[@]}" &
		spid=$!
		sleep 0.5
		out=$WORK/wrk-$wl-$name-strace.log
		timeout -k 10 $((STRACE_SECONDS + 60)) "$WRK" -t"$THREADS" -c"$CLIENTS" -d"$STRACE_SECONDS"s \
			-s "$WORK/$wl.lua" "$(proxy_url "$name" "$wl")" >"$out" 2>&1 || true
		kill -INT "$spid" 2>/dev/null || true
		wait "$spid" 2>/dev/null || true
		n=$(awk '$2 == "requests" && $3 == "in" {print $1}' "$out")
		[[ -n $n && -s $trace ]] || { warn "strace of $name gave nothing"; continue; }
		# strace -c: "% time seconds usecs/call calls [errors] syscall"; the total line last
		awk -v n="$n" -v name="$name" '
			$NF == "total" {total = $4}
			$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {c[$NF] = $4}
			END {
				printf "  %-13s %5.2f per request:", name, total / n
				k = 0
				for (s in c) order[++k] = s
				for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
					if (c[order[j]] > c[order[i]]) {t = order[i]; order[i] = order[j]; order[j] = t}
				for (i = 1; i <= k && i <= 8; i++) printf " %s %.2f", order[i], c[order[i]] / n
				printf "\n"
			}' "$trace"
	done
}

report_logs_http() {  # the warning/error lines of the daemons' logs
	local f n any=0
	for f in "$WORK/cb/cratebouncer.log" "$WORK/cb/stderr.log" "$WORK/nginx/error.log" "$WORK/nginx/stderr.log" \
		"$WORK/haproxy/stderr.log" "$WORK/upstream/error.log" "$WORK/upstream/stderr.log"; do
		[[ -s $f ]] || continue
		n=$(grep -c -E 'WARNING|ERROR|FATAL|PANIC|ALERT|\[(warn|error|crit|alert|emerg|WARNING|ALERT|NOTICE)\]|error|warning' "$f" || true)
		((n > 0)) || continue
		any=1
		echo "$n warning/error lines in ${f#"$WORK"/}; first ones:"
		grep -E 'WARNING|ERROR|FATAL|PANIC|ALERT|\[(warn|error|crit|alert|emerg|WARNING|ALERT|NOTICE)\]|error|warning' "$f" |
			head -n 5 | sed 's/^/  /'
	done
	((any)) || echo "no warning or error lines in the logs of cratebouncer, nginx, haproxy and the upstream"
}

# ---------------------------------------------------------------------------------------------

http_init

# 1. The CA, the configs and workloads, the four daemons, and the check requests through each path.
make_certs
write_configs_http
start_all
check_all
note "upstream: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), 1 worker, HTTPS on localhost:$UP_PORT" \
	"(test CA; 200 with a ${#RESULT}-byte JSON, ${#MIX_RESULT} bytes for a small crate-python request," \
	"${#BULK_RESULT} for a gzip one), work directory $WORK"
note "$("$CB_BIN" -V 2>&1 | head -n 1): HTTP on 127.0.0.1:$CB_PORT (pid $CB_PID), pool_size $POOL_SIZE, verify-full"
note "nginx: HTTP on 127.0.0.1:$NGX_PORT (master $NGX_PID, worker ${NGX_WORKERS[*]}), upstream keepalive $NGINX_KEEPALIVE," \
	"proxy_ssl_verify on"
note "$("$HAPROXY" -v 2>&1 | head -n 1 | sed 's/ - https.*//'): HTTP on 127.0.0.1:$HAP_PORT (pid $HAP_PID)," \
	"nbthread $HAPROXY_THREADS, http-reuse always, ssl verify required"
note "host: $(nproc) CPUs, load average $(cut -d ' ' -f 1-3 /proc/loadavg) at the start"

# 2. Warm-up: every pool filled, nothing reported.
if ((WARMUP > 0)); then
	for wl in $WORKLOADS; do
		for name in "${PROXIES[@]}"; do
			through "$name" "$wl" warmup "$WARMUP"
			((RUN_OK)) || run_failed "$name" "$wl" warmup
		done
	done
	check_alive || die "a daemon died during the warm-up"
fi

# 3. The rounds, per workload.
echo "(proxy us, up us, wrk us: user + system CPU microseconds per request of the proxy, the upstream's"
echo " worker and wrk; up %: the upstream worker's busy share of one core, near 100 it is the bottleneck;"
echo " host %: all $(nproc) cores, anything else running included; conns: TLS connections the upstream"
echo " accepted during the run)"
for wl in $WORKLOADS; do
	proxy_rounds "$wl"
done
if ((STRACE)); then
	for wl in $WORKLOADS; do
		syscall_profile "$wl"
	done
fi
check_all   # all still serve

# 4. Anything the daemons complained about.
echo
note "load average $(cut -d ' ' -f 1-3 /proc/loadavg) at the end"
report_logs_http
[[ $FAILED == 0 ]] || die "some wrk runs failed (see above)"
