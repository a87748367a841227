# shellcheck shell=bash
# Helpers sourced by the deploy/*.sh scripts. Not executable on its own.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   pe_config                                   # export PE_* from flink_jobs.config
#   log "message"                               # timestamped line on stderr
#   wait_for_port HOST PORT TIMEOUT_S NAME LOGFILE [PIDFILE]
#   pid_alive PIDFILE [MATCH]                   # 0 if the recorded process runs
#   stop_pidfile PIDFILE NAME TIMEOUT_S         # TERM, wait, then KILL
# and: die, port_open, log_tail FILE [N], pid_of, launch_bg, rotate_log, show_logs, mvn_fetch,
#      render_template (@KEY@ placeholders), java_bin, host_of/port_of ("h:p,..."), rss_mib.
# PE_VENV_PYTHON (default .venv/bin/python) is the interpreter of the Python health checks.
#
# Every host, port and directory comes from `python3 -m flink_jobs.config --shell`
# (so PE_* environment variables and the config defaults are the only source).

PE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PE_ROOT
PE_VENV_PYTHON="${PE_VENV_PYTHON:-$PE_ROOT/.venv/bin/python}"
export PE_VENV_PYTHON

log() {
    printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "${LOG_TAG:-deploy}" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

# Export the PE_* variables of the project configuration (environment overrides apply).
pe_config() {
    local out py=python3
    # a config file (PE_CONFIG_FILE) needs PyYAML, which the venv has and a bare python3 may not
    if [[ -n "${PE_CONFIG_FILE:-}" && -x "$PE_VENV_PYTHON" ]]; then
        py="$PE_VENV_PYTHON"
    fi
    out="$(cd "$PE_ROOT" && "$py" -m flink_jobs.config --shell)" \
        || die "the configuration is invalid (the lines above say why; check: python3 -m flink_jobs.config --check)"
    eval "$out"
    [[ "${PE_RUN_PATH:-}" == /* ]] || die "PE_RUN_PATH is not an absolute path: '${PE_RUN_PATH:-}'"
}

# host_of "h:p,h2:p2" -> h ; port_of "h:p,..." -> p  (first entry of a comma separated list)
host_of() { local first="${1%%,*}"; printf '%s' "${first%:*}"; }
port_of() { local first="${1%%,*}"; printf '%s' "${first##*:}"; }

# 0 if something accepts TCP connections on HOST:PORT.
port_open() {
    # shellcheck disable=SC2016 # $1/$2 expand in the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# Print the last N lines of a log file, framed, on stderr.
log_tail() {
    local file="$1" n="${2:-40}"
    if [[ -s "$file" ]]; then
        printf -- '----- last %s lines of %s -----\n' "$n" "$file" >&2
        tail -n "$n" "$file" >&2
        printf -- '----- end of %s -----\n' "$file" >&2
    else
        printf -- '(log %s is empty or missing)\n' "$file" >&2
    fi
}

# The process id recorded in PIDFILE, if that process still runs and its command line contains
# MATCH (default: the pid file's directory, which every server command line here contains), so
# that a recycled pid of someone else's process is never taken for ours.
pid_of() {
    local pidfile="$1" match="${2:-}" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(<"$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -n "$match" ]] || match="$(cd "$(dirname "$pidfile")" && pwd)"
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$match" || return 1
    printf '%s' "$pid"
}

pid_alive() {
    pid_of "$@" >/dev/null
}

# Wait until HOST:PORT accepts connections. On timeout (or when the process in the optional
# PIDFILE dies first) print a clear error plus the last 40 lines of LOGFILE and return 1.
wait_for_port() {
    local host="$1" port="$2" timeout_s="$3" name="$4" logfile="$5" pidfile="${6:-}"
    local deadline=$((SECONDS + timeout_s))
    while ! port_open "$host" "$port"; do
        if [[ -n "$pidfile" ]] && ! pid_alive "$pidfile"; then
            log "ERROR: $name exited before opening $host:$port"
            log_tail "$logfile" 40
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log "ERROR: $name did not open $host:$port within ${timeout_s}s"
            log_tail "$logfile" 40
            return 1
        fi
        sleep 0.5
    done
}

# Stop the process recorded in PIDFILE: SIGTERM, wait up to TIMEOUT seconds, then SIGKILL.
# Succeeds when nothing runs. Removes the pid file.
stop_pidfile() {
    local pidfile="$1" name="$2" timeout_s="${3:-60}" pid deadline
    if ! pid="$(pid_of "$pidfile")"; then
        log "$name is not running"
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + timeout_s))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "WARN: $name (pid $pid) still alive after ${timeout_s}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "ERROR: $name (pid $pid) survived SIGKILL"
        return 1
    fi
    rm -f "$pidfile"
    log "$name stopped"
}

# Resident memory of a pid in MiB (for status lines).
rss_mib() {
    awk '/^VmRSS:/ {printf "%d", $2 / 1024}' "/proc/$1/status" 2>/dev/null || true
}

# Copy the dependencies of a pom into a directory with Maven, unless the marker says that this
# exact pom was copied already. The marker holds the pom's checksum, so a version bump refetches.
mvn_fetch() {
    local pom="$1" dest="$2" name="$3" sum marker out
    marker="$dest/.complete"
    sum="$(sha256sum "$pom" | cut -d' ' -f1)"
    if [[ -f "$marker" && "$(<"$marker")" == "$sum" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found: Maven is needed to fetch $name"
    log "fetching $name jars with Maven into $dest"
    rm -rf "$dest"
    mkdir -p "$dest"
    if ! out="$(mvn -q -B -f "$pom" dependency:copy-dependencies \
        -DoutputDirectory="$dest" -DincludeScope=runtime 2>&1)"; then
        printf '%s\n' "$out" >&2
        rm -rf "$dest"
        die "mvn could not fetch the $name jars ($pom)"
    fi
    printf '%s\n' "$sum" >"$marker"
    log "$name: $(find "$dest" -name '*.jar' | wc -l) jars in $dest"
}

# java binary: $JAVA_HOME/bin/java if set, else the one on PATH.
java_bin() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        printf '%s' "$JAVA_HOME/bin/java"
    else
        command -v java || die "java not found (set JAVA_HOME)"
    fi
}

# Replace @KEY@ placeholders in TEMPLATE with values given as KEY=VALUE arguments; write OUT.
render_template() {
    local template="$1" out="$2" kv key value content
    shift 2
    content="$(<"$template")"
    for kv in "$@"; do
        key="${kv%%=*}"
        value="${kv#*=}"
        content="${content//@${key}@/$value}"
    done
    if [[ "$content" =~ @[A-Z_]+@ ]]; then
        die "unfilled placeholder ${BASH_REMATCH[0]} in $template"
    fi
    printf '%s\n' "$content" >"$out"
}

# Start COMMAND... in the background in its own session (so a Ctrl-C or a closed terminal does not
# reach it), in WORKDIR, stdout+stderr appended to LOGFILE. The final process (after exec) writes
# its own pid into PIDFILE, so the pid is right whether or not setsid had to fork.
launch_bg() {
    local pidfile="$1" logfile="$2" workdir="$3" i
    shift 3
    rm -f "$pidfile"
    (
        cd "$workdir" || exit 1
        # shellcheck disable=SC2016 # expanded by the inner bash
        exec setsid bash -c 'echo "$$" >"$1"; shift; exec "$@"' _ "$pidfile" "$@" \
            </dev/null >>"$logfile" 2>&1
    ) &
    for ((i = 0; i < 50; i++)); do
        [[ -s "$pidfile" ]] && return 0
        sleep 0.1
    done
    die "no pid file $pidfile 5 s after launching $1"
}

# Move LOGFILE to LOGFILE.1 (one previous run kept) so each start has a fresh log.
rotate_log() {
    local logfile="$1"
    mkdir -p "$(dirname "$logfile")"
    if [[ -s "$logfile" ]]; then
        mv -f "$logfile" "$logfile.1"
    fi
    : >"$logfile"
}

# Subcommand `logs`: last 200 lines, or follow with -f.
show_logs() {
    local logfile="$1"
    shift
    [[ -f "$logfile" ]] || die "no log yet: $logfile"
    if [[ "${1:-}" == "-f" ]]; then
        exec tail -n 200 -F "$logfile"
    fi
    tail -n "${1:-200}" "$logfile"
}

# Start the JVM server of the calling script unless it already runs; wait until it is healthy.
# The script defines HOST PORT PIDFILE LOGFILE DIR LIB STOP_TIMEOUT_S and the functions fetch,
# render_config, jvm_opts, healthy, wait_healthy T0, and optionally before_launch.
#   start_jvm_server NAME "PORTS TO CHECK" "EXTRA JVM OPTS" "what to log" MAIN_CLASS [ARGS...]
# shellcheck disable=SC2153 # HOST, PORT, PIDFILE... are set by the calling script
start_jvm_server() {
    local name="$1" ports="$2" extra_opts="$3" what="$4"
    shift 4
    local t0=$SECONDS java opts extra pid p
    if pid="$(pid_of "$PIDFILE")"; then
        if healthy; then
            log "already running (pid $pid) on $HOST:$PORT"
            return 0
        fi
        log "process $pid exists but is not healthy yet; waiting"
        wait_healthy "$t0" || die "$name (pid $pid) is not healthy; see $LOGFILE"
        log "running (pid $pid) on $HOST:$PORT"
        return 0
    fi
    for p in $ports; do
        if port_open "$HOST" "$p"; then
            die "$HOST:$p is already in use by a process this script did not start (no live $PIDFILE)"
        fi
    done
    fetch
    render_config
    rotate_log "$LOGFILE"
    if declare -F before_launch >/dev/null; then
        before_launch
    fi
    java="$(java_bin)"
    mapfile -t opts < <(jvm_opts)
    read -ra extra <<<"$extra_opts"
    opts+=("${extra[@]}")
    log "starting $name on $HOST:$PORT ($what)"
    # the start-up timeout counts from the launch: a first fetch with an empty ~/.m2 can take minutes
    t0=$SECONDS
    launch_bg "$PIDFILE" "$LOGFILE" "$DIR" "$java" "${opts[@]}" -cp "$LIB/*" "$@"
    if ! wait_healthy "$t0"; then
        stop_pidfile "$PIDFILE" "$name" "$STOP_TIMEOUT_S" || true
        die "$name did not become healthy; log: $LOGFILE"
    fi
    pid="$(<"$PIDFILE")"
    log "$name is up (pid $pid) on $HOST:$PORT after $((SECONDS - t0)) s"
}

# ---- Secure local stack (README "Security"): a local CA, server keystores, generated passwords ----

# abs_path PATH: a config path as the Python config resolves it (relative to the repository root).
abs_path() {
    if [[ "$1" == /* ]]; then printf '%s' "$1"; else printf '%s' "$PE_ROOT/$1"; fi
}

# ensure_secret_file FILE: a random password in FILE (exactly the password, mode 600) unless it exists.
ensure_secret_file() {
    local file="$1"
    [[ -s "$file" ]] && return 0
    mkdir -p "$(dirname "$file")"
    (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16), end="")' >"$file")
    log "generated a password into $file"
}

# read_secret_ref REF: the secret behind a config reference (a file path or env:NAME). Only ever
# captured into variables that go into mode-600 files, never onto a command line.
read_secret_ref() {
    local ref="$1"
    if [[ "$ref" == env:* ]]; then
        local name="${ref#env:}"
        [[ -n "${!name:-}" ]] || die "environment variable $name (from $ref) is empty"
        printf '%s' "${!name}"
    else
        local file
        file="$(abs_path "$ref")"
        ensure_secret_file "$file"
        cat "$file"
    fi
}

# ensure_ca CA_PEM: a self-signed CA certificate (key next to it as *-key.pem) unless CA_PEM exists.
# Locked: stack.sh starts Kafka and Cassandra side by side, and both may share one CA.
ensure_ca() {
    local ca="$1" key="${1%.pem}-key.pem"
    [[ -s "$ca" ]] && return 0
    mkdir -p "$(dirname "$ca")"
    (
        flock 9
        [[ -s "$ca" ]] && exit 0
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 365 -subj "/CN=profile-engine local CA" \
            -keyout "$key" -out "$ca.tmp" 2>/dev/null && mv "$ca.tmp" "$ca" && log "created local CA $ca"
    ) 9>"$ca.lock" || die "openssl could not create the CA $ca"
}

# server_keystore CA_PEM HOST OUT_P12 PASSFILE: a PKCS12 keystore with a key and a certificate for
# HOST (IP or DNS SAN, plus localhost) signed by the CA; its store password is generated into PASSFILE.
server_keystore() {
    local ca="$1" host="$2" out="$3" passfile="$4" key="${1%.pem}-key.pem" tmp san
    ensure_secret_file "$passfile"
    tmp="$(mktemp -d)"
    if [[ "$host" =~ ^[0-9.]+$ ]]; then san="IP:$host,DNS:localhost"; else san="DNS:$host,DNS:localhost"; fi
    (
        umask 077
        openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$host" \
            -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null &&
            printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$tmp/ext" &&
            openssl x509 -req -in "$tmp/server.csr" -CA "$ca" -CAkey "$key" -set_serial "0x$(openssl rand -hex 12)" \
                -days 365 -sha256 -extfile "$tmp/ext" -out "$tmp/server.pem" 2>/dev/null &&
            openssl pkcs12 -export -name server -inkey "$tmp/server.key" -in "$tmp/server.pem" \
                -certfile "$ca" -passout "file:$passfile" -out "$out"
    ) || { rm -rf "$tmp"; die "openssl could not create the keystore $out"; }
    rm -rf "$tmp"
    log "created server keystore $out for $host ($san)"
}
